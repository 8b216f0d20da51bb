"""AWS Signature Version 4 for the S3 front (:mod:`aioims.emulator.s3front`).

Pure helpers, no I/O except the aws-chunked decoder:

* :func:`parse_auth` reads who signed a request (``Authorization`` header or
  presigned ``X-Amz-*`` query) without checking anything;
* :func:`compute_signature` recomputes a SigV4 signature from the request as it
  arrived (raw path, query, the signed headers, the declared payload hash),
  the way S3 does it: the path is not normalised, the query is decoded then
  re-encoded with the RFC 3986 unreserved set and sorted;
* :func:`sign_headers` signs an outgoing request (used to re-sign towards the
  upstream with ``x-amz-content-sha256: UNSIGNED-PAYLOAD``);
* :func:`decode_aws_chunked` turns an ``aws-chunked`` body into its payload;
* :class:`S3Error` is an S3 error answer (status, code, message) rendered as
  the real S3 XML.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timezone
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

import aiohttp
import attrs
from multidict import CIMultiDict, MultiMapping

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = (
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
)
# Query parameters that carry a presigned request's authentication.
PRESIGN_PARAMS = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    }
)

_SIGNED = frozenset({"host", "content-md5", "content-type"})

_MESSAGES = {
    "AccessDenied": "Access Denied",
    "AuthorizationHeaderMalformed": "The authorization header is malformed.",
    "ExpiredToken": "The provided token has expired.",
    "IncompleteBody": "You did not provide the number of bytes specified by the "
    "Content-Length HTTP header.",
    "InternalError": "We encountered an internal error. Please try again.",
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
    "InvalidRequest": "The authorization mechanism you have provided is not supported. "
    "Please use AWS4-HMAC-SHA256.",
    "InvalidToken": "The provided token is malformed or otherwise invalid.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the "
    "signature you provided. Check your key and signing method.",
    "SlowDown": "Please reduce your request rate.",
    "XAmzContentSHA256Mismatch": "The provided 'x-amz-content-sha256' header does not match "
    "what was computed.",
}


class S3Error(Exception):
    """An S3 error answer: HTTP status, S3 error code, message."""

    def __init__(self, status: int, code: str, message: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message if message is not None else _MESSAGES.get(code, code)
        super().__init__(f"{status} {code}: {self.message}")

    def to_xml(self, request_id: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id.lower()}</HostId></Error>"
        ).encode()


def new_request_id() -> str:
    return secrets.token_hex(8).upper()


@attrs.frozen
class RequestAuth:
    """The SigV4 authentication a request carries (parsed, not yet checked)."""

    access_key: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str  # YYYYMMDDTHHMMSSZ
    token: str | None
    presigned: bool
    expires: int | None  # X-Amz-Expires of a presigned URL
    payload_hash: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def split_query(raw_query: str) -> list[tuple[str, str]]:
    """The decoded (name, value) pairs of a raw query string, in order."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_query(raw_query: str, drop: Iterable[str] = ()) -> str:
    dropped = set(drop)
    encoded = sorted(
        (quote(name, safe="-_.~"), quote(value, safe="-_.~"))
        for name, value in split_query(raw_query)
        if name not in dropped
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def _malformed(detail: str) -> S3Error:
    return S3Error(
        400, "AuthorizationHeaderMalformed", f"The authorization header is malformed; {detail}"
    )


def _scope(credential: str) -> tuple[str, str, str, str]:
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise _malformed(f"invalid credential scope {credential!r}.")
    return parts[0], parts[1], parts[2], parts[3]


def parse_auth(raw_query: str, headers: MultiMapping[str]) -> RequestAuth | None:
    """Who signed the request, or ``None`` for an anonymous request.

    Raises :class:`S3Error` for an unsupported or malformed authentication.
    """
    header = headers.get("Authorization")
    token = headers.get("x-amz-security-token")
    if header is not None:
        algorithm, _, rest = header.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise S3Error(400, "InvalidRequest")
        fields = {}
        for item in rest.split(","):
            name, _, value = item.strip().partition("=")
            fields[name] = value
        try:
            credential = fields["Credential"]
            signed = fields["SignedHeaders"]
            signature = fields["Signature"]
        except KeyError as exc:
            raise _malformed(f"missing {exc.args[0]}.") from None
        amz_date = headers.get("x-amz-date") or ""
        access_key, date, region, service = _scope(credential)
        return RequestAuth(
            access_key=access_key,
            date=date,
            region=region,
            service=service,
            signed_headers=tuple(signed.split(";")),
            signature=signature,
            amz_date=amz_date,
            token=token,
            presigned=False,
            expires=None,
            payload_hash=headers.get("x-amz-content-sha256", ""),
        )
    query = dict(split_query(raw_query))
    if "X-Amz-Credential" in query:
        if query.get("X-Amz-Algorithm") != ALGORITHM:
            raise S3Error(400, "InvalidRequest")
        access_key, date, region, service = _scope(query["X-Amz-Credential"])
        try:
            expires = int(query.get("X-Amz-Expires", "604800"))
        except ValueError:
            raise S3Error(
                400, "AuthorizationQueryParametersError", "X-Amz-Expires should be a number"
            ) from None
        return RequestAuth(
            access_key=access_key,
            date=date,
            region=region,
            service=service,
            signed_headers=tuple(query.get("X-Amz-SignedHeaders", "host").split(";")),
            signature=query.get("X-Amz-Signature", ""),
            amz_date=query.get("X-Amz-Date", ""),
            token=query.get("X-Amz-Security-Token", token),
            presigned=True,
            expires=expires,
            payload_hash=headers.get("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        )
    if "AWSAccessKeyId" in query:  # SigV2 presigned URL
        raise S3Error(400, "InvalidRequest")
    return None


def parse_amz_date(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret_key}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def canonical_request(
    method: str,
    raw_path: str,
    query: str,
    headers: MultiMapping[str],
    signed_headers: Iterable[str],
    payload_hash: str,
) -> str:
    names = list(signed_headers)
    lines = [
        f"{name}:{','.join(' '.join(value.split()) for value in headers.getall(name, []))}\n"
        for name in names
    ]
    return "\n".join(
        [method.upper(), raw_path or "/", query, "".join(lines), ";".join(names), payload_hash]
    )


def compute_signature(
    secret_key: str,
    auth: RequestAuth,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: MultiMapping[str],
) -> str:
    """The signature the request should carry if it was signed with ``secret_key``."""
    query = canonical_query(raw_query, drop=("X-Amz-Signature",) if auth.presigned else ())
    request = canonical_request(
        method, raw_path, query, headers, auth.signed_headers, auth.payload_hash
    )
    to_sign = "\n".join(
        [ALGORITHM, auth.amz_date, auth.scope, hashlib.sha256(request.encode()).hexdigest()]
    )
    key = signing_key(secret_key, auth.date, auth.region, auth.service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def sign_headers(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: MultiMapping[str],
    *,
    access_key: str,
    secret_key: str,
    region: str,
    payload_hash: str = UNSIGNED_PAYLOAD,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers that sign an outgoing request with SigV4.

    ``headers`` must already hold ``host`` and every header to be signed;
    ``host``, ``content-md5``, ``content-type`` and all ``x-amz-*`` headers are
    signed.  Returns ``x-amz-date``, ``x-amz-content-sha256`` and ``Authorization``.
    """
    moment = now or datetime.now(timezone.utc)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    extra = {"x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    view: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low not in extra and (low in _SIGNED or low.startswith("x-amz-")):
            view.add(low, value)
    view.update(extra)
    signed = sorted(set(view))
    auth = RequestAuth(
        access_key=access_key,
        date=amz_date[:8],
        region=region,
        service="s3",
        signed_headers=tuple(signed),
        signature="",
        amz_date=amz_date,
        token=None,
        presigned=False,
        expires=None,
        payload_hash=payload_hash,
    )
    signature = compute_signature(secret_key, auth, method, raw_path, raw_query, view)
    extra["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{auth.scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return extra


async def decode_aws_chunked(
    reader: aiohttp.StreamReader, block: int = 1 << 16
) -> AsyncIterator[bytes]:
    """The payload of an ``aws-chunked`` body (chunk signatures and trailers dropped)."""
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise S3Error(400, "IncompleteBody")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise S3Error(400, "InvalidChunkSizeError", "Invalid aws-chunked header") from None
        if size == 0:
            while (await reader.readline()).strip():
                pass  # trailing headers (checksums) are dropped
            return
        remaining = size
        while remaining:
            data = await reader.read(min(remaining, block))
            if not data:
                raise S3Error(400, "IncompleteBody")
            remaining -= len(data)
            yield data
        if (await reader.readline()).strip():
            raise S3Error(400, "InvalidChunkSizeError", "Chunk is not terminated by CRLF")
