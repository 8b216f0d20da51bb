"""FakeS3: an in-memory S3 with aiobotocore's client surface, for the
transfer engine's rules (resume, abort, reconcile, crash windows) in
milliseconds.

Plugging it in
--------------
::

    from fakes.fake_s3 import FakeS3

    s3 = FakeS3()                                   # AWS behaviour; FakeS3("radosgw") for Ceph's
    config = TransferConfig(s3_client_factory=s3.client_factory, ...)
    # the transfer calls s3.client_factory(client_kwargs) and uses
    # ``async with`` on the result: it yields a FakeS3Client bound to the
    # kwargs' credentials (aws_access_key_id / aws_session_token).

    client = s3.client()                            # or use a client directly
    await client.create_multipart_upload(Bucket="b", Key="k")

Every call is a coroutine with botocore's keyword arguments; it yields to
the event loop once, then answers a dict shaped like botocore's parsed
response (``ResponseMetadata`` with ``RequestId``, ``HostId``,
``HTTPStatusCode``, ``HTTPHeaders``), or raises
``botocore.exceptions.ClientError`` with a realistic ``Error.Code``,
``Error.Message``, HTTP status and request id.

Operations: ``create_multipart_upload`` (``ChecksumAlgorithm``: kept and
echoed), ``upload_part`` (``Body``: bytes,
bytearray, memoryview, BytesIO or any ``read()``-able; ``ContentLength``,
``ContentMD5`` (``InvalidDigest`` if malformed, ``BadDigest`` if it does not
match), ``ChecksumCRC32C`` (``InvalidRequest`` if malformed, ``BadDigest``
if wrong; echoed back)), ``list_parts`` (``MaxParts``, ``PartNumberMarker``
-> ``IsTruncated``, ``NextPartNumberMarker``; the upload's
``ChecksumAlgorithm`` and each part's ``ChecksumCRC32C``), ``list_multipart_uploads``
(``Prefix``, ``MaxUploads``, ``KeyMarker``/``UploadIdMarker`` ->
``NextKeyMarker``/``NextUploadIdMarker``), ``complete_multipart_upload``
(``MalformedXML``, ``InvalidPartOrder``, ``InvalidPart``, ``EntityTooSmall``
below ``min_part_size``, ``NoSuchUpload``; ETag ``"md5-of-md5s-N"``),
``abort_multipart_upload`` (204; ``NoSuchUpload`` if gone), ``head_object``
(404 ``Error.Code == "404"`` like botocore), ``put_object``, ``get_object``
(``Range``; the object's bytes must have been kept, see ``keep_bytes``),
``get_paginator("list_parts" | "list_multipart_uploads").paginate(...)``.
Unknown buckets are created on first use unless ``buckets=`` is given
(then ``NoSuchBucket``).

Storage costs nothing for big data: a part is kept as its size and MD5
(+ its bytes when ``size <= keep_bytes``, default 1 MiB); an object as size,
ETag, part MD5s (+ bytes when every part's bytes were kept).
``s3.objects[(bucket, key)]`` -> :class:`StoredObject`;
``s3.uploads[upload_id]`` -> :class:`Upload` (``state``: open, completed,
aborted); ``s3.open_uploads(bucket=None)``.

Scripting faults: rules
-----------------------
A :class:`Rule` matches an operation (snake_case or the API name:
``"upload_part"`` or ``"UploadPart"``; ``"*"`` for any), optionally a part
number, and fires on the ``nth`` matching call (1-based) and the
``times - 1`` matching calls after it (``times=None``: from the nth on,
forever).  Every rule counts the calls it matches whether or not another
rule fired.  On each call, the first due rule (in order added) with an
action (error, drop, lost response, hold) fires, and so does every due rule
with hooks only: ``fired`` counts, ``reached`` is set, ``before(call)``
runs; ``after(call, response)`` runs when the call succeeds.  A due action
rule shadowed by an earlier one does not fire (but counted the call).  Helpers
(all return the rule; keyword arguments ``part``, ``nth``, ``times``)::

    s3.fail("upload_part", "SlowDown", part=3, times=2)       # ClientError (status from the code)
    s3.fail("complete_multipart_upload", "InternalError", status=500)
    s3.drop("upload_part", part=2)                           # connection error, nothing applied
    s3.lose_response("complete_multipart_upload")            # applied, then connection error
    gate = anyio.Event(); r = s3.hold("upload_part", gate, part=1)   # waits for gate.set()
    await r.reached.wait()                                   # ...the request is at the server
    s3.hold_response("complete_multipart_upload", gate)      # applied; answer withheld until set
    s3.hook("upload_part", before=coro_fn, after=coro_fn)    # before(call) / after(call, response)

Connection error kinds (``kind=``): ``"endpoint"`` (botocore
``EndpointConnectionError``, the default of ``drop``), ``"closed"``
(``ConnectionClosedError`` wrapping aiohttp's ``ServerDisconnectedError``,
what aiobotocore raises when the server hangs up; the default of
``lose_response``), ``"disconnected"`` (a bare aiohttp
``ServerDisconnectedError``), ``"read_timeout"`` (``ReadTimeoutError``).
A rule can combine ``before``/``after`` hooks with any action.

The request log
---------------
``s3.log`` is every call in arrival order as a :class:`Call`: ``operation``
(snake_case), ``params`` (the keyword arguments minus ``Body``),
``body_size``/``body_md5`` (hex) for calls with a body, ``access_key`` and
``token`` used, ``request_id``, ``applied`` (the state changed), and
``outcome``: ``"ok"``, ``"error"`` (``error`` holds the code), ``"dropped"``
(connection error, not applied), ``"lost"`` (applied, answer lost),
``"cancelled"`` (cancelled before applying) or ``"cancelled-applied"``
(cancelled while its answer was withheld), ``"pending"`` while running.
``s3.calls(operation=None, part=None, outcome=None, applied=None)`` filters
it; ``s3.part_sends(upload_id=None)`` counts UploadPart calls per part number
(``assert max(s3.part_sends().values()) == 1`` is "nothing re-sent").
``s3.in_flight`` / ``s3.max_in_flight`` count calls per operation
running at once (``"*"``: all).  ``s3.clients`` lists the clients opened
through ``client_factory`` (``.kwargs`` without the secret, ``.closed``).

Credentials
-----------
With no credentials registered every request is accepted.  After
``s3.allow(access_key, token=None, expires_at=None)`` only registered keys
are: an unknown key answers ``InvalidAccessKeyId`` (403), a wrong session
token ``InvalidToken`` (400), and once ``s3.clock() >= expires_at`` the key
answers ``ExpiredToken`` (400; radosgw: ``AccessDenied`` 403; or
``quirks.expired_code``).  ``s3.expire(access_key)`` expires it now,
``s3.revoke(access_key)`` forgets it.  ``clock`` defaults to a
:class:`~fakes.clock.FakeClock` (``s3.clock.advance(seconds)``); pass
``clock=time.time`` to compare with real ``expires_at`` timestamps.

Server variants
---------------
``FakeS3("aws")`` (default) or ``FakeS3("radosgw")``; or ``quirks=Quirks(...)``:
``list_parts_gone_code`` (radosgw: ``NoSuchKey`` for ListParts of a gone
upload), ``empty_complete_etag`` (radosgw: Complete answers ``ETag: ""``;
HeadObject still has the real one), ``complete_aborted`` (radosgw:
``("InternalError", 500)`` when completing an aborted upload),
``complete_completed`` (``"NoSuchUpload"``, AWS's usual answer, or ``"ok"``:
the same answer again), ``expired_code``, ``checksums``.

Flexible checksums (``quirks.checksums``; True for AWS, False for radosgw:
Ceph before Squid ignores them).  Honoured, as AWS does: a wrong
``ChecksumCRC32C`` is ``BadDigest`` (UploadPart, PutObject) and, for
multipart uploads, the two AWS rules —

* UploadPart's checksum type must be the one CreateMultipartUpload declared
  (``ChecksumAlgorithm``): ``InvalidRequest`` "Checksum Type mismatch
  occurred, expected checksum Type: null, actual checksum Type: crc32c" (or
  ``crc32c``/``null`` the other way round);
* CompleteMultipartUpload of an upload created with ``CRC32C`` must list
  every part's ``ChecksumCRC32C``: ``InvalidRequest`` "The upload was
  created using a crc32c checksum. The complete request must include the
  checksum for each part. It was missing for part N in the request."; a
  wrong one is ``InvalidPart``.  The answer then carries the composite
  ``ChecksumCRC32C`` (``"<crc32c of the part CRCs>-N"``).

Ignored (radosgw): ``ChecksumAlgorithm`` and ``ChecksumCRC32C`` are accepted,
checked nowhere, never echoed nor listed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from .clock import FakeClock

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: snake_case method -> S3 API operation name
OPERATIONS = {
    "create_multipart_upload": "CreateMultipartUpload",
    "upload_part": "UploadPart",
    "list_parts": "ListParts",
    "list_multipart_uploads": "ListMultipartUploads",
    "complete_multipart_upload": "CompleteMultipartUpload",
    "abort_multipart_upload": "AbortMultipartUpload",
    "head_object": "HeadObject",
    "put_object": "PutObject",
    "get_object": "GetObject",
}
_BY_API_NAME = {api: snake for snake, api in OPERATIONS.items()}

#: code -> (HTTP status, message) as S3 answers them
ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "BadDigest": (400, "The Content-MD5 you specified did not match what we received."),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size"),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed size"),
    "ExpiredToken": (400, "The provided token has expired."),
    "IncompleteBody": (
        400,
        "You did not provide the number of bytes specified by the Content-Length HTTP header",
    ),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (
        403,
        "The AWS Access Key Id you provided does not exist in our records.",
    ),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidDigest": (400, "The Content-MD5 you specified was invalid."),
    "InvalidPart": (
        400,
        "One or more of the specified parts could not be found.  The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag.",
    ),
    "InvalidPartOrder": (
        400,
        "The list of parts was not in ascending order. Parts must be ordered by part number.",
    ),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidToken": (400, "The provided token is malformed or otherwise invalid."),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against our published schema",
    ),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (
        404,
        "The specified upload does not exist. The upload ID may be invalid, or the upload "
        "may have been aborted or completed.",
    ),
    "RequestTimeout": (
        400,
        "Your socket connection to the server was not read from or written to within the "
        "timeout period.",
    ),
    "RequestTimeTooSkewed": (
        403,
        "The difference between the request time and the current time is too large.",
    ),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided.",
    ),
    "SlowDown": (503, "Please reduce your request rate."),
    "TokenRefreshRequired": (400, "The provided token must be refreshed."),
    "404": (404, "Not Found"),
}

CONNECTION_ERRORS = ("endpoint", "closed", "disconnected", "read_timeout")

Hook = Callable[..., Awaitable[object]]


def operation_name(name: str) -> str:
    """``"UploadPart"`` or ``"upload_part"`` -> ``"upload_part"`` (``"*"`` stays)."""
    if name == "*" or name in OPERATIONS:
        return name
    if name in _BY_API_NAME:
        return _BY_API_NAME[name]
    raise ValueError(f"FakeS3 does not implement {name!r} (known: {', '.join(OPERATIONS)})")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _quote(md5_hex: str) -> str:
    return f'"{md5_hex}"'


def _unquote(etag: str) -> str:
    return str(etag).strip().strip('"')


# --- CRC32C (Castagnoli), for ChecksumCRC32C ---------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | memoryview) -> int:
    """CRC32C of ``data`` (a C implementation when one is installed; the pure
    Python fallback does ~5 MiB/s: keep crc32c tests' parts small)."""
    for module_name in ("google_crc32c", "crc32c"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        value = module.value(bytes(data)) if module_name == "google_crc32c" else module.crc32c(data)
        return int(value)
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_b64(data: bytes | memoryview) -> str:
    """The ``x-amz-checksum-crc32c`` value of ``data`` (base64 of 4 big-endian bytes)."""
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


def md5_b64(data: bytes | memoryview) -> str:
    """The ``Content-MD5`` value of ``data``."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def multipart_etag(part_md5_hexes: Iterable[str]) -> str:
    """S3's multipart ETag: ``"<md5 of the parts' binary MD5s>-<count>"``."""
    digest = hashlib.md5(usedforsecurity=False)
    count = 0
    for md5_hex in part_md5_hexes:
        digest.update(binascii.unhexlify(md5_hex))
        count += 1
    return f'"{digest.hexdigest()}-{count}"'


# --- model ---------------------------------------------------------------------------------


@dataclass
class Quirks:
    """How the server deviates from AWS (see the module docstring)."""

    list_parts_gone_code: str = "NoSuchUpload"
    empty_complete_etag: bool = False
    complete_aborted: tuple[str, int] | None = None
    complete_completed: str = "NoSuchUpload"
    expired_code: str = "ExpiredToken"
    #: Honours flexible checksums (x-amz-checksum-crc32c, ChecksumAlgorithm);
    #: False: accepts and ignores them (Ceph before Squid).
    checksums: bool = True


VARIANTS = {
    "aws": Quirks(),
    "radosgw": Quirks(
        list_parts_gone_code="NoSuchKey",
        empty_complete_etag=True,
        complete_aborted=("InternalError", 500),
        expired_code="AccessDenied",
        checksums=False,
    ),
}


@dataclass
class StoredPart:
    part_number: int
    size: int
    md5: str  # hex
    last_modified: datetime
    crc32c: str | None = None  # base64, when the request carried one
    data: bytes | None = None

    @property
    def etag(self) -> str:
        return _quote(self.md5)


@dataclass
class Upload:
    upload_id: str
    bucket: str
    key: str
    seq: int
    initiated: datetime
    access_key: str | None
    parts: dict[int, StoredPart] = field(default_factory=dict)
    state: str = "open"  # open | completed | aborted
    completed_with: list[tuple[int, str]] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    checksum_algorithm: str | None = None  # what CreateMultipartUpload declared (upper case)


@dataclass
class StoredObject:
    bucket: str
    key: str
    size: int
    etag: str  # quoted, as S3 reports it
    last_modified: datetime
    part_md5s: list[str] = field(default_factory=list)  # hex; empty for PutObject
    data: bytes | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = "binary/octet-stream"
    upload_id: str | None = None
    checksum_crc32c: str | None = None  # composite "<b64>-N" of a CRC32C multipart upload

    @property
    def parts(self) -> int:
        return len(self.part_md5s)


@dataclass
class Credential:
    access_key: str
    token: str | None = None
    expires_at: float | None = None


@dataclass
class Call:
    """One request as the server saw it."""

    seq: int
    operation: str
    params: dict[str, Any]
    access_key: str | None
    token: str | None
    request_id: str
    body_size: int | None = None
    body_md5: str | None = None
    outcome: str = "pending"
    error: str | None = None
    applied: bool = False
    rule: Rule | None = None

    @property
    def part(self) -> int | None:
        value = self.params.get("PartNumber")
        return None if value is None else int(value)

    @property
    def upload_id(self) -> str | None:
        return self.params.get("UploadId")

    @property
    def key(self) -> str | None:
        return self.params.get("Key")

    def __repr__(self) -> str:
        where = f" part={self.part}" if self.part is not None else ""
        error = f" {self.error}" if self.error else ""
        return f"<Call #{self.seq} {self.operation}{where} {self.outcome}{error}>"


@dataclass(eq=False)
class Rule:
    """A scripted behaviour (see the module docstring)."""

    operation: str
    part: int | None = None
    nth: int = 1
    times: int | None = 1
    error: str | None = None
    status: int | None = None
    message: str | None = None
    disconnect: str | None = None
    lose_response: str | None = None
    wait: anyio.Event | None = None
    hold_response: anyio.Event | None = None
    before: Hook | None = None
    after: Hook | None = None
    #: matching calls seen so far / times this rule fired
    seen: int = 0
    fired: int = 0
    _reached: anyio.Event | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.operation = operation_name(self.operation)
        if self.nth < 1:
            raise ValueError("nth is 1-based")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 or None")
        for kind in (self.disconnect, self.lose_response):
            if kind is not None and kind not in CONNECTION_ERRORS:
                raise ValueError(f"connection error kind must be one of {CONNECTION_ERRORS}")

    @property
    def reached(self) -> anyio.Event:
        """Set when the rule fires (the request reached the server)."""
        if self._reached is None:
            self._reached = anyio.Event()
        return self._reached

    def _matches(self, operation: str, part: int | None) -> bool:
        if self.operation not in ("*", operation):
            return False
        return self.part is None or self.part == part

    def _acts(self) -> bool:
        """Whether the rule does more than call hooks."""
        return any(
            value is not None
            for value in (
                self.error,
                self.disconnect,
                self.lose_response,
                self.wait,
                self.hold_response,
            )
        )

    def _due(self) -> bool:
        if self.seen < self.nth:
            return False
        return self.times is None or self.seen < self.nth + self.times


class _Error(Exception):
    """Raised inside the fake; turned into a ClientError with request metadata."""

    def __init__(self, code: str, status: int | None = None, message: str | None = None,
                 **extra: Any) -> None:  # fmt: skip
        default_status, default_message = ERRORS.get(code, (400, code))
        self.code = code
        self.status = status if status is not None else default_status
        self.message = message if message is not None else default_message
        self.extra = {k: v for k, v in extra.items() if v is not None}
        super().__init__(code)


def _connection_error(kind: str, endpoint: str) -> Exception:
    if kind == "endpoint":
        return EndpointConnectionError(endpoint_url=endpoint)
    if kind == "closed":
        return ConnectionClosedError(endpoint_url=endpoint, error=aiohttp.ServerDisconnectedError())
    if kind == "disconnected":
        return aiohttp.ServerDisconnectedError()
    if kind == "read_timeout":
        return ReadTimeoutError(endpoint_url=endpoint, error=TimeoutError())
    raise ValueError(kind)


def _read_body(body: Any) -> bytes | memoryview:
    """The bytes of a request body (consumed like a send would)."""
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return memoryview(body)
    if isinstance(body, memoryview):
        return body.cast("B") if body.format != "B" or body.ndim != 1 else body
    if isinstance(body, io.BytesIO):
        position = body.tell()
        data = bytes(body.getbuffer()[position:])
        body.seek(0, io.SEEK_END)
        return data
    if hasattr(body, "read"):
        return body.read()  # type: ignore[no-any-return]
    raise TypeError(f"FakeS3 cannot read a body of type {type(body).__name__}")


class FakeBody:
    """The ``Body`` of a GetObject answer (aiobotocore's StreamingBody surface)."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.closed = False

    async def read(self, amt: int | None = None) -> bytes:
        await anyio.lowlevel.checkpoint()
        return self._stream.read(-1 if amt is None else amt)

    async def iter_chunks(self, chunk_size: int = 1024) -> AsyncIterator[bytes]:
        while chunk := await self.read(chunk_size):
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FakeBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Meta:
    def __init__(self, endpoint_url: str, region_name: str) -> None:
        self.endpoint_url = endpoint_url
        self.region_name = region_name


class FakeS3Client:
    """An S3 client on a :class:`FakeS3`, with the credentials it was made with."""

    def __init__(self, server: FakeS3, kwargs: dict[str, Any]) -> None:
        self.server = server
        self.kwargs = {k: v for k, v in kwargs.items() if k != "aws_secret_access_key"}
        self.access_key: str | None = kwargs.get("aws_access_key_id")
        self.token: str | None = kwargs.get("aws_session_token") or None
        self.meta = _Meta(
            str(kwargs.get("endpoint_url") or server.endpoint_url),
            str(kwargs.get("region_name") or server.region),
        )
        self.closed = False

    async def _do(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise RuntimeError("FakeS3Client used after it was closed")
        return await self.server._call(self, operation, params)

    async def create_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return await self._do("create_multipart_upload", params)

    async def upload_part(self, **params: Any) -> dict[str, Any]:
        return await self._do("upload_part", params)

    async def list_parts(self, **params: Any) -> dict[str, Any]:
        return await self._do("list_parts", params)

    async def list_multipart_uploads(self, **params: Any) -> dict[str, Any]:
        return await self._do("list_multipart_uploads", params)

    async def complete_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return await self._do("complete_multipart_upload", params)

    async def abort_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return await self._do("abort_multipart_upload", params)

    async def head_object(self, **params: Any) -> dict[str, Any]:
        return await self._do("head_object", params)

    async def put_object(self, **params: Any) -> dict[str, Any]:
        return await self._do("put_object", params)

    async def get_object(self, **params: Any) -> dict[str, Any]:
        return await self._do("get_object", params)

    def get_paginator(self, operation: str) -> _Paginator:
        return _Paginator(self, operation_name(operation))

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FakeS3Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Paginator:
    def __init__(self, client: FakeS3Client, operation: str) -> None:
        if operation not in ("list_parts", "list_multipart_uploads"):
            raise ValueError(f"FakeS3 has no paginator for {operation}")
        self.client = client
        self.operation = operation

    async def paginate(self, **params: Any) -> AsyncIterator[dict[str, Any]]:
        params = dict(params)
        while True:
            page = await getattr(self.client, self.operation)(**params)
            yield page
            if not page.get("IsTruncated"):
                return
            if self.operation == "list_parts":
                params["PartNumberMarker"] = page["NextPartNumberMarker"]
            else:
                params["KeyMarker"] = page["NextKeyMarker"]
                params["UploadIdMarker"] = page["NextUploadIdMarker"]


class _ClientContext:
    """What ``client_factory`` returns: ``async with`` yields the client."""

    def __init__(self, client: FakeS3Client) -> None:
        self.client = client

    async def __aenter__(self) -> FakeS3Client:
        await anyio.lowlevel.checkpoint()
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


class FakeS3:
    """The in-memory server (see the module docstring)."""

    def __init__(
        self,
        variant: str = "aws",
        *,
        quirks: Quirks | None = None,
        clock: Callable[[], float] | None = None,
        keep_bytes: int = 1 * MiB,
        min_part_size: int = 5 * MiB,
        buckets: Iterable[str] | None = None,
        endpoint_url: str = "http://fake-s3.invalid",
        region: str = "us-east-1",
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}")
        self.variant = variant
        self.quirks = quirks if quirks is not None else replace(VARIANTS[variant])
        self.clock: Callable[[], float] = clock if clock is not None else FakeClock()
        self.keep_bytes = keep_bytes
        self.min_part_size = min_part_size
        self.buckets: set[str] | None = None if buckets is None else set(buckets)
        self.endpoint_url = endpoint_url
        self.region = region
        self.uploads: dict[str, Upload] = {}
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.credentials: dict[str, Credential] = {}
        self.rules: list[Rule] = []
        self.log: list[Call] = []
        self.clients: list[FakeS3Client] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self._seq = itertools.count(1)
        self._upload_seq = itertools.count(1)

    # -- plugging in ----------------------------------------------------------

    def client_factory(self, client_kwargs: dict[str, Any]) -> _ClientContext:
        """``TransferConfig(s3_client_factory=fake.client_factory)``."""
        client = FakeS3Client(self, client_kwargs)
        self.clients.append(client)
        return _ClientContext(client)

    def client(self, access_key: str = "testing", token: str | None = None) -> FakeS3Client:
        """A client for direct use (tests of the fake, setting up state)."""
        client = FakeS3Client(self, {"aws_access_key_id": access_key, "aws_session_token": token})
        self.clients.append(client)
        return client

    # -- buckets and credentials ------------------------------------------------

    def create_bucket(self, name: str) -> None:
        if self.buckets is not None:
            self.buckets.add(name)

    def allow(self, access_key: str, token: str | None = None,
              expires_at: float | None = None) -> Credential:  # fmt: skip
        credential = Credential(access_key, token, expires_at)
        self.credentials[access_key] = credential
        return credential

    def expire(self, access_key: str) -> None:
        self.credentials[access_key].expires_at = self.clock()

    def revoke(self, access_key: str) -> None:
        self.credentials.pop(access_key, None)

    # -- scripting --------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def fail(self, operation: str, code: str, status: int | None = None, *,
             message: str | None = None, **match: Any) -> Rule:  # fmt: skip
        return self.add(Rule(operation, error=code, status=status, message=message, **match))

    def drop(self, operation: str, kind: str = "endpoint", **match: Any) -> Rule:
        return self.add(Rule(operation, disconnect=kind, **match))

    def lose_response(self, operation: str, kind: str = "closed", **match: Any) -> Rule:
        return self.add(Rule(operation, lose_response=kind, **match))

    def hold(self, operation: str, gate: anyio.Event, **match: Any) -> Rule:
        return self.add(Rule(operation, wait=gate, **match))

    def hold_response(self, operation: str, gate: anyio.Event, **match: Any) -> Rule:
        return self.add(Rule(operation, hold_response=gate, **match))

    def hook(self, operation: str, *, before: Hook | None = None, after: Hook | None = None,
             **match: Any) -> Rule:  # fmt: skip
        return self.add(Rule(operation, before=before, after=after, **match))

    # -- inspection -------------------------------------------------------------

    def calls(
        self,
        operation: str | None = None,
        *,
        part: int | None = None,
        outcome: str | None = None,
        applied: bool | None = None,
    ) -> list[Call]:
        op = None if operation is None else operation_name(operation)
        return [
            c
            for c in self.log
            if (op is None or op == "*" or c.operation == op)
            and (part is None or c.part == part)
            and (outcome is None or c.outcome == outcome)
            and (applied is None or c.applied == applied)
        ]

    def part_sends(self, upload_id: str | None = None) -> Counter[int]:
        """UploadPart calls per part number (of ``upload_id``, or all)."""
        return Counter(
            c.part
            for c in self.log
            if c.operation == "upload_part"
            and c.part is not None
            and (upload_id is None or c.upload_id == upload_id)
        )

    def open_uploads(self, bucket: str | None = None) -> list[Upload]:
        return [
            u
            for u in self.uploads.values()
            if u.state == "open" and (bucket is None or u.bucket == bucket)
        ]

    # -- the request path -----------------------------------------------------------

    def _match(self, operation: str, part: int | None) -> list[Rule]:
        due = []
        for rule in self.rules:
            if rule._matches(operation, part):
                rule.seen += 1
                if rule._due():
                    due.append(rule)
        return due

    async def _call(
        self, client: FakeS3Client, operation: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        body = None
        call = Call(
            seq=next(self._seq),
            operation=operation,
            params={k: v for k, v in params.items() if k != "Body"},
            access_key=client.access_key,
            token=client.token,
            request_id="",
        )
        call.request_id = f"FAKE{call.seq:08X}"
        if "Body" in params:
            body = _read_body(params["Body"])
            call.body_size = len(body)
            call.body_md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        self.log.append(call)
        due = self._match(operation, call.part)
        rule = call.rule = next((r for r in due if r._acts()), None)
        due = [r for r in due if r is rule or not r._acts()]  # shadowed actions do not fire
        self.in_flight[operation] += 1
        self.in_flight["*"] += 1
        for name in (operation, "*"):
            self.max_in_flight[name] = max(self.max_in_flight[name], self.in_flight[name])
        try:
            for each in due:
                each.fired += 1
                each.reached.set()
                if each.before is not None:
                    await each.before(call)
            if rule is not None:
                if rule.wait is not None:
                    await rule.wait.wait()
                if rule.error is not None:
                    raise _Error(rule.error, rule.status, rule.message)
                if rule.disconnect is not None:
                    call.outcome = "dropped"
                    raise _connection_error(rule.disconnect, client.meta.endpoint_url)
            self._check_credentials(client)
            response = self._apply(operation, params, body, client)
            call.applied = True
            if rule is not None:
                if rule.hold_response is not None:
                    await rule.hold_response.wait()
                if rule.lose_response is not None:
                    call.outcome = "lost"
                    raise _connection_error(rule.lose_response, client.meta.endpoint_url)
            for each in due:
                if each.after is not None:
                    await each.after(call, response)
            call.outcome = "ok"
            meta = response.setdefault("ResponseMetadata", {})
            meta.update(self._metadata(call, meta.get("HTTPStatusCode", 200)))
            return response
        except _Error as exc:
            call.outcome, call.error = "error", exc.code
            raise self._client_error(call, exc) from None
        except anyio.get_cancelled_exc_class():
            call.outcome = "cancelled-applied" if call.applied else "cancelled"
            raise
        finally:
            self.in_flight[operation] -= 1
            self.in_flight["*"] -= 1

    def _metadata(self, call: Call, status: int) -> dict[str, Any]:
        return {
            "RequestId": call.request_id,
            "HostId": f"fake-host-{call.seq}",
            "HTTPStatusCode": status,
            "HTTPHeaders": {
                "x-amz-request-id": call.request_id,
                "x-amz-id-2": f"fake-host-{call.seq}",
            },
            "RetryAttempts": 0,
        }

    def _client_error(self, call: Call, exc: _Error) -> ClientError:
        error = {"Code": exc.code, "Message": exc.message, **exc.extra}
        response = {"Error": error, "ResponseMetadata": self._metadata(call, exc.status)}
        return ClientError(response, OPERATIONS[call.operation])

    def _check_credentials(self, client: FakeS3Client) -> None:
        if not self.credentials:
            return
        credential = self.credentials.get(client.access_key or "")
        if credential is None:
            raise _Error("InvalidAccessKeyId", AWSAccessKeyId=client.access_key)
        if (credential.token or None) != (client.token or None):
            raise _Error("InvalidToken")
        if credential.expires_at is not None and self.clock() >= credential.expires_at:
            raise _Error(self.quirks.expired_code)

    # -- operations -----------------------------------------------------------------

    def _apply(
        self, operation: str, params: dict[str, Any], body: bytes | memoryview | None,
        client: FakeS3Client,
    ) -> dict[str, Any]:  # fmt: skip
        bucket = params.get("Bucket")
        if not bucket:
            raise _Error("InvalidArgument", message="Bucket is required")
        if self.buckets is not None and bucket not in self.buckets:
            raise _Error("NoSuchBucket", BucketName=bucket)
        handler = getattr(self, "_op_" + operation)
        return handler(params, body, client)  # type: ignore[no-any-return]

    def _upload(self, params: dict[str, Any], gone_code: str = "NoSuchUpload") -> Upload:
        upload = self.uploads.get(str(params.get("UploadId")))
        if (
            upload is None
            or upload.state != "open"
            or upload.bucket != params["Bucket"]
            or upload.key != params.get("Key")
        ):
            raise _Error(gone_code, UploadId=params.get("UploadId"))
        return upload

    def _op_create_multipart_upload(self, params: dict[str, Any], body: Any,
                                    client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        seq = next(self._upload_seq)
        upload_id = f"fake-upload-{seq:06d}-{hashlib.md5(str(seq).encode()).hexdigest()[:12]}"
        algorithm = str(params.get("ChecksumAlgorithm") or "").upper() or None
        if not self.quirks.checksums:
            algorithm = None
        self.uploads[upload_id] = Upload(
            upload_id, params["Bucket"], params["Key"], seq, _now(), client.access_key,
            metadata=dict(params.get("Metadata") or {}), content_type=params.get("ContentType"),
            checksum_algorithm=algorithm,
        )  # fmt: skip
        response = {"Bucket": params["Bucket"], "Key": params["Key"], "UploadId": upload_id}
        if algorithm is not None:
            response["ChecksumAlgorithm"] = algorithm
        return response

    def _check_digests(self, params: dict[str, Any], data: bytes | memoryview) -> str | None:
        length = params.get("ContentLength")
        if length is not None and int(length) != len(data):
            raise _Error("IncompleteBody")
        content_md5 = params.get("ContentMD5")
        if content_md5 is not None:
            try:
                wanted = base64.b64decode(str(content_md5), validate=True)
            except (binascii.Error, ValueError):
                wanted = b""
            if len(wanted) != 16:
                raise _Error("InvalidDigest", **{"Content-MD5": content_md5})
            if wanted != hashlib.md5(data, usedforsecurity=False).digest():
                raise _Error(
                    "BadDigest",
                    ExpectedDigest=wanted.hex(),
                    CalculatedDigest=md5_b64(data),
                )
        crc = params.get("ChecksumCRC32C")
        if crc is not None and self.quirks.checksums:
            try:
                raw = base64.b64decode(str(crc), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 4:
                raise _Error(
                    "InvalidRequest",
                    message="Value for x-amz-checksum-crc32c header is invalid.",
                )
            if int.from_bytes(raw, "big") != crc32c(data):
                raise _Error(
                    "BadDigest",
                    message="The CRC32C you specified did not match the calculated checksum.",
                )
            return str(crc)
        return None

    def _op_upload_part(self, params: dict[str, Any], body: bytes | memoryview | None,
                        client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        data = body if body is not None else b""
        number = params.get("PartNumber")
        if not isinstance(number, int) or not 1 <= number <= 10_000:
            raise _Error(
                "InvalidArgument",
                message="Part number must be an integer between 1 and 10000, inclusive",
                ArgumentName="partNumber", ArgumentValue=number,
            )  # fmt: skip
        upload = self._upload(params)
        if len(data) > 5 * GiB:
            raise _Error("EntityTooLarge")
        if self.quirks.checksums:
            declared = (upload.checksum_algorithm or "null").lower()
            sent = "crc32c" if params.get("ChecksumCRC32C") is not None else "null"
            if declared != sent:
                raise _Error(
                    "InvalidRequest",
                    message=f"Checksum Type mismatch occurred, expected checksum Type: "
                    f"{declared}, actual checksum Type: {sent}",
                )
        crc = self._check_digests(params, data)
        md5_hex = hashlib.md5(data, usedforsecurity=False).hexdigest()
        keep = bytes(data) if len(data) <= self.keep_bytes else None
        part = StoredPart(number, len(data), md5_hex, _now(), crc, keep)
        upload.parts[number] = part
        response: dict[str, Any] = {"ETag": part.etag}
        if crc is not None:
            response["ChecksumCRC32C"] = crc
        return response

    def _op_list_parts(self, params: dict[str, Any], body: Any,
                       client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        upload = self._upload(params, self.quirks.list_parts_gone_code)
        marker = int(params.get("PartNumberMarker") or 0)
        max_parts = int(params.get("MaxParts") or 1000)
        numbers = [n for n in sorted(upload.parts) if n > marker]
        page, rest = numbers[:max_parts], numbers[max_parts:]
        response: dict[str, Any] = {
            "Bucket": upload.bucket,
            "Key": upload.key,
            "UploadId": upload.upload_id,
            "PartNumberMarker": marker,
            "NextPartNumberMarker": page[-1] if page else 0,
            "MaxParts": max_parts,
            "IsTruncated": bool(rest),
            "Initiator": {"ID": upload.access_key or "anonymous"},
            "Owner": {"ID": upload.access_key or "anonymous"},
            "StorageClass": "STANDARD",
        }
        if upload.checksum_algorithm is not None:
            response["ChecksumAlgorithm"] = upload.checksum_algorithm
        if page:
            response["Parts"] = []
            for n in page:
                part = upload.parts[n]
                item: dict[str, Any] = {
                    "PartNumber": n, "LastModified": part.last_modified,
                    "ETag": part.etag, "Size": part.size,
                }  # fmt: skip
                if part.crc32c is not None:
                    item["ChecksumCRC32C"] = part.crc32c
                response["Parts"].append(item)
        return response

    def _op_list_multipart_uploads(self, params: dict[str, Any], body: Any,
                                   client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        bucket = params["Bucket"]
        prefix = str(params.get("Prefix") or "")
        key_marker = str(params.get("KeyMarker") or "")
        id_marker = str(params.get("UploadIdMarker") or "")
        max_uploads = int(params.get("MaxUploads") or 1000)
        candidates = sorted(
            (u for u in self.open_uploads(bucket) if u.key.startswith(prefix)),
            key=lambda u: (u.key, u.seq),
        )
        marker_seq = self.uploads[id_marker].seq if id_marker in self.uploads else None

        def after_marker(u: Upload) -> bool:
            if not key_marker:
                return True
            if u.key > key_marker:
                return True
            return u.key == key_marker and marker_seq is not None and u.seq > marker_seq

        selected = [u for u in candidates if after_marker(u)]
        page, rest = selected[:max_uploads], selected[max_uploads:]
        response: dict[str, Any] = {
            "Bucket": bucket,
            "KeyMarker": key_marker,
            "UploadIdMarker": id_marker,
            "NextKeyMarker": page[-1].key if page else "",
            "NextUploadIdMarker": page[-1].upload_id if page else "",
            "Prefix": prefix,
            "MaxUploads": max_uploads,
            "IsTruncated": bool(rest),
        }
        if page:
            response["Uploads"] = [
                {
                    "UploadId": u.upload_id,
                    "Key": u.key,
                    "Initiated": u.initiated,
                    "StorageClass": "STANDARD",
                    "Owner": {"ID": u.access_key or "anonymous"},
                    "Initiator": {"ID": u.access_key or "anonymous"},
                    **({"ChecksumAlgorithm": u.checksum_algorithm} if u.checksum_algorithm else {}),
                }
                for u in page
            ]
        return response

    def _op_complete_multipart_upload(self, params: dict[str, Any], body: Any,
                                      client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        upload_id = str(params.get("UploadId"))
        upload = self.uploads.get(upload_id)
        listed = list((params.get("MultipartUpload") or {}).get("Parts") or [])
        if upload is not None and upload.state == "aborted" and self.quirks.complete_aborted:
            code, status = self.quirks.complete_aborted
            raise _Error(code, status)
        if (
            upload is not None
            and upload.state == "completed"
            and self.quirks.complete_completed == "ok"
            and upload.completed_with == [(int(p["PartNumber"]), _unquote(p["ETag"]))
                                          for p in listed]
        ):  # fmt: skip
            return self._completion(upload, self.objects[(upload.bucket, upload.key)])
        upload = self._upload(params)
        if not listed:
            raise _Error("MalformedXML")
        numbers = [int(p["PartNumber"]) for p in listed]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            raise _Error("InvalidPartOrder", UploadId=upload_id)
        chosen: list[StoredPart] = []
        for item in listed:
            part = upload.parts.get(int(item["PartNumber"]))
            if part is None or _unquote(item.get("ETag", "")) != part.md5:
                raise _Error(
                    "InvalidPart", UploadId=upload_id, PartNumber=item["PartNumber"],
                    ETag=item.get("ETag"),
                )  # fmt: skip
            if upload.checksum_algorithm == "CRC32C":
                given = item.get("ChecksumCRC32C")
                if given is None:
                    raise _Error(
                        "InvalidRequest",
                        message="The upload was created using a crc32c checksum. The complete "
                        "request must include the checksum for each part. It was missing for "
                        f"part {item['PartNumber']} in the request.",
                    )
                if given != part.crc32c:
                    raise _Error(
                        "InvalidPart", UploadId=upload_id, PartNumber=item["PartNumber"],
                        ETag=item.get("ETag"),
                    )  # fmt: skip
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < self.min_part_size:
                raise _Error(
                    "EntityTooSmall", ProposedSize=part.size, MinSizeAllowed=self.min_part_size,
                    PartNumber=part.part_number, ETag=part.etag,
                )  # fmt: skip
        size = sum(p.size for p in chosen)
        data = None
        if all(p.data is not None for p in chosen) and size <= self.keep_bytes:
            data = b"".join(p.data for p in chosen if p.data is not None)
        stored = StoredObject(
            upload.bucket, upload.key, size, multipart_etag(p.md5 for p in chosen), _now(),
            part_md5s=[p.md5 for p in chosen], data=data, metadata=dict(upload.metadata),
            content_type=upload.content_type or "binary/octet-stream", upload_id=upload_id,
        )  # fmt: skip
        if upload.checksum_algorithm == "CRC32C":
            raw = b"".join(base64.b64decode(str(p.crc32c)) for p in chosen)
            stored.checksum_crc32c = f"{crc32c_b64(raw)}-{len(chosen)}"
        self.objects[(upload.bucket, upload.key)] = stored
        upload.state = "completed"
        upload.completed_with = [(p.part_number, p.md5) for p in chosen]
        upload.parts = {}
        return self._completion(upload, stored)

    def _completion(self, upload: Upload, stored: StoredObject) -> dict[str, Any]:
        response = {
            "Location": f"{self.endpoint_url}/{upload.bucket}/{upload.key}",
            "Bucket": upload.bucket,
            "Key": upload.key,
            "ETag": "" if self.quirks.empty_complete_etag else stored.etag,
        }
        if stored.checksum_crc32c is not None:
            response["ChecksumCRC32C"] = stored.checksum_crc32c
        return response

    def _op_abort_multipart_upload(self, params: dict[str, Any], body: Any,
                                   client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        upload = self._upload(params)
        upload.state = "aborted"
        upload.parts = {}
        return {"ResponseMetadata": {"HTTPStatusCode": 204}}

    def _object(self, params: dict[str, Any], missing: str) -> StoredObject:
        stored = self.objects.get((params["Bucket"], params.get("Key", "")))
        if stored is None:
            raise _Error(missing, Key=params.get("Key") if missing == "NoSuchKey" else None)
        return stored

    def _op_head_object(self, params: dict[str, Any], body: Any,
                        client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        stored = self._object(params, "404")
        return {
            "AcceptRanges": "bytes",
            "LastModified": stored.last_modified,
            "ContentLength": stored.size,
            "ETag": stored.etag,
            "ContentType": stored.content_type,
            "Metadata": dict(stored.metadata),
        }

    def _op_put_object(self, params: dict[str, Any], body: bytes | memoryview | None,
                       client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        data = body if body is not None else b""
        if len(data) > 5 * GiB:
            raise _Error("EntityTooLarge")
        crc = self._check_digests(params, data)
        md5_hex = hashlib.md5(data, usedforsecurity=False).hexdigest()
        self.objects[(params["Bucket"], params["Key"])] = StoredObject(
            params["Bucket"], params["Key"], len(data), _quote(md5_hex), _now(),
            data=bytes(data) if len(data) <= self.keep_bytes else None,
            metadata=dict(params.get("Metadata") or {}),
            content_type=params.get("ContentType") or "binary/octet-stream",
        )  # fmt: skip
        response: dict[str, Any] = {"ETag": _quote(md5_hex)}
        if crc is not None:
            response["ChecksumCRC32C"] = crc
        return response

    def _op_get_object(self, params: dict[str, Any], body: Any,
                       client: FakeS3Client) -> dict[str, Any]:  # fmt: skip
        stored = self._object(params, "NoSuchKey")
        if stored.data is None:
            raise RuntimeError(
                f"FakeS3 kept only the digest of {stored.key} ({stored.size} bytes): "
                f"raise keep_bytes to read it back"
            )
        data, status = stored.data, 200
        response: dict[str, Any] = {
            "AcceptRanges": "bytes", "LastModified": stored.last_modified,
            "ETag": stored.etag, "ContentType": stored.content_type,
            "Metadata": dict(stored.metadata),
        }  # fmt: skip
        wanted = params.get("Range")
        if wanted:
            first, last = _parse_range(str(wanted), stored.size)
            data, status = data[first : last + 1], 206
            response["ContentRange"] = f"bytes {first}-{last}/{stored.size}"
        response["ContentLength"] = len(data)
        response["Body"] = FakeBody(data)
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
        return response


def _parse_range(header: str, size: int) -> tuple[int, int]:
    unit, _, spec = header.partition("=")
    start, _, end = spec.partition("-")
    try:
        if unit.strip() != "bytes" or "," in spec:
            raise ValueError(header)
        if not start:  # suffix: the last N bytes
            first, last = max(0, size - int(end)), size - 1
        else:
            first = int(start)
            last = min(int(end), size - 1) if end else size - 1
    except ValueError:
        raise _Error("InvalidArgument", message=f"Invalid range {header!r}") from None
    if first >= size or first > last:
        raise _Error("InvalidRange", RangeRequested=header, ActualObjectSize=size)
    return first, last
