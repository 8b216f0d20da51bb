"""S3 operations of one transfer, each with the engine's retry policy.

Every request goes through :meth:`Engine.call`:

* transient failures (5xx, 429, ``SlowDown``, ``RequestTimeout``, connection
  errors/resets, timeouts) are retried up to ``max_attempts_per_part``
  attempts, with exponential backoff and jitter;
* other S3 errors (``AccessDenied``, ``NoSuchUpload``, ``InvalidPart``,
  ``BadDigest``...) get one retry; TLS certificate errors none;
* credential errors (``ExpiredToken``...) trigger a refresh through
  :class:`~aioims.transfer.s3.S3Clients` and do not use up attempts;
* codes the caller names as an answer (``final``: the CRC32C probe's
  checksum mismatch) are raised at once, never retried.

A CRC32C multipart upload (``checksum_algorithm == "CRC32C"``) is created
with ``ChecksumAlgorithm="CRC32C"``, its parts keep their CRC32C
(:class:`~aioims.transfer.results.CompletedPart`), and
:meth:`Engine.complete` lists every part's ``ChecksumCRC32C``.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .checksums import (
    CHECKSUM_MISMATCH_CODES,
    CRC32C_ALGORITHM,
    PROBE_BODY,
    PROBE_ETAG,
    cached_probe,
    probe_crc32c_value,
    remember_probe,
)
from .config import PartPlan, TransferConfig
from .errors import CredentialsExpiredError, PartUploadError, S3TransferError
from .events import Emitter, PartDone, PartRetried, PartStarted
from .results import CompletedPart
from .s3 import FailureKind, S3Clients, S3Failure, classify, endpoint_url

logger = logging.getLogger("aioims.transfer")

_OPERATION_NAMES = {
    "create_multipart_upload": "CreateMultipartUpload",
    "upload_part": "UploadPart",
    "put_object": "PutObject",
    "list_parts": "ListParts",
    "complete_multipart_upload": "CompleteMultipartUpload",
    "abort_multipart_upload": "AbortMultipartUpload",
    "head_object": "HeadObject",
    "list_multipart_uploads": "ListMultipartUploads",
}


#: Parts per ListParts page (S3's maximum).
LIST_PARTS_PAGE = 1000


def multipart_etag(parts: list[CompletedPart]) -> str | None:
    """The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s,
    ``-N``.  None if a part ETag is not a plain MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    for part in parts:
        try:
            digest.update(binascii.unhexlify(part.etag.strip('"')))
        except (binascii.Error, ValueError):
            return None
    return f'"{digest.hexdigest()}-{len(parts)}"'


class CleanupRegistry:
    """Things to undo if the transfer fails (like s3transfer's): run in
    reverse order, shielded from cancellation, each bounded in time."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[str, Callable[[], Awaitable[object]]]] = {}
        self._next = 0

    def register(self, name: str, callback: Callable[[], Awaitable[object]]) -> int:
        self._next += 1
        self._items[self._next] = (name, callback)
        return self._next

    def unregister(self, handle: int) -> None:
        self._items.pop(handle, None)

    async def run(self, time_limit: float) -> None:
        with anyio.CancelScope(shield=True):
            for handle in sorted(self._items, reverse=True):
                name, callback = self._items.pop(handle)
                with anyio.move_on_after(time_limit) as scope:
                    try:
                        await callback()
                    except Exception:
                        logger.warning("cleanup step %r failed", name, exc_info=True)
                if scope.cancelled_caught:
                    logger.warning("cleanup step %r timed out after %.0f s", name, time_limit)


class Engine:
    """The S3 side of one transfer (one object, at most one multipart upload)."""

    def __init__(
        self,
        clients: S3Clients,
        config: TransferConfig,
        plan: PartPlan,
        emitter: Emitter,
    ) -> None:
        self.clients = clients
        self.config = config
        self.plan = plan
        self.emitter = emitter
        self.bucket = clients.target.bucket
        self.key = clients.target.file
        self.upload_id: str | None = None
        #: The ``ChecksumAlgorithm`` our multipart upload was created with
        #: (``"CRC32C"``) or None.
        self.checksum_algorithm: str | None = None
        self.parts: dict[int, CompletedPart] = {}
        self.bytes_done = 0

    # -- the retry loop -------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        part_number: int | None = None,
        max_attempts: int | None = None,
        before_attempt: Callable[[], object] | None = None,
        final: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Send one S3 request with the retry policy; raise a typed error
        (:class:`PartUploadError` for parts) when it fails for good.  An
        error whose code is in ``final`` is an answer: raised at once."""
        operation = _OPERATION_NAMES.get(method, method)
        limit = max_attempts or self.config.max_attempts_per_part
        attempt = 0
        while True:
            await self.clients.ensure_fresh()
            generation, client = self.clients.generation, self.clients.client
            attempt += 1
            if before_attempt is not None:
                before_attempt()
            try:
                response: dict[str, Any] = await getattr(client, method)(**params)
                return response
            except Exception as exc:
                failure = self._classify(exc, generation)
                if failure is None:
                    raise
                if failure.kind is FailureKind.CREDENTIALS:
                    attempt -= 1  # a refresh is not an attempt (refreshes are limited)
                    try:
                        await self.clients.credentials_rejected(generation, failure.code)
                    except CredentialsExpiredError as err:
                        err.operation = operation
                        err.upload_id = self.upload_id
                        if err.code is None or err.code == failure.code:
                            err.request_id = failure.request_id
                            err.http_status = failure.http_status
                        if err.__cause__ is None:  # keep a failed refresh's own cause
                            err.__cause__ = exc
                        raise
                    continue
                if failure.code in final:
                    raise self._error(operation, part_number, attempt, failure) from exc
                if failure.kind is FailureKind.TRANSIENT:
                    allowed = limit
                elif failure.kind is FailureKind.PERMANENT:
                    allowed = min(2, limit)
                else:
                    allowed = 1
                if attempt >= allowed:
                    raise self._error(operation, part_number, attempt, failure) from exc
                delay = self.backoff(attempt)
                where = f"part {part_number}" if part_number is not None else operation
                logger.debug(
                    "%s attempt %d failed (%s); retrying in %.2f s",
                    where,
                    attempt,
                    failure.message,
                    delay,
                )
                if part_number is not None:
                    self.emitter.emit(
                        PartRetried(part_number, attempt, failure.message, failure.code, delay)
                    )
                await anyio.sleep(delay)

    def _classify(self, exc: BaseException, generation: int) -> S3Failure | None:
        method = getattr(self.clients, "classify", None)
        if method is not None:
            result: S3Failure | None = method(exc, generation)
            return result
        return classify(exc)

    def _error(
        self, operation: str, part_number: int | None, attempts: int, failure: S3Failure
    ) -> S3TransferError:
        transient = failure.kind is FailureKind.TRANSIENT
        common: dict[str, Any] = {
            "operation": operation,
            "code": failure.code,
            "attempts": attempts,
            "http_status": failure.http_status,
            "request_id": failure.request_id,
            "upload_id": self.upload_id,
            "transient": transient,
        }
        if part_number is not None:
            return PartUploadError(
                f"part {part_number} failed after {attempts} attempt(s): {failure.message}",
                part_number=part_number,
                **common,
            )
        return S3TransferError(
            f"{operation} failed after {attempts} attempt(s): {failure.message}", **common
        )

    # -- operations -----------------------------------------------------------

    def _ids(self) -> dict[str, Any]:
        return {"Bucket": self.bucket, "Key": self.key}

    async def create(self, checksum_algorithm: str | None = None) -> str:
        """CreateMultipartUpload; ``checksum_algorithm="CRC32C"`` declares
        that every part carries ``x-amz-checksum-crc32c`` (AWS refuses such
        parts on an upload that did not declare it)."""
        params = self._ids()
        if checksum_algorithm is not None:
            params["ChecksumAlgorithm"] = checksum_algorithm
        response = await self.call("create_multipart_upload", params)
        self.upload_id = str(response["UploadId"])
        self.checksum_algorithm = checksum_algorithm
        logger.debug("multipart upload %s created for %s/%s (checksum algorithm %s)",
                     self.upload_id, self.bucket, self.key, checksum_algorithm)  # fmt: skip
        return self.upload_id

    async def list_parts(self, upload_id: str) -> tuple[dict[int, CompletedPart], str | None]:
        """Every part S3 holds for ``upload_id`` (all pages, each with its
        ``ChecksumCRC32C`` when listed) and the upload's ``ChecksumAlgorithm``
        as ListParts reports it (None: not reported)."""
        parts: dict[int, CompletedPart] = {}
        algorithm: str | None = None
        marker = 0
        while True:
            params = {**self._ids(), "UploadId": upload_id, "MaxParts": LIST_PARTS_PAGE}
            if marker:
                params["PartNumberMarker"] = marker
            page = await self.call("list_parts", params)
            algorithm = str(page.get("ChecksumAlgorithm") or "") or algorithm
            for item in page.get("Parts", []):
                number = int(item["PartNumber"])
                crc = item.get("ChecksumCRC32C")
                parts[number] = CompletedPart(
                    number, str(item["ETag"]), int(item["Size"]), str(crc) if crc else None
                )
            next_marker = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or next_marker <= marker:
                return parts, algorithm
            marker = next_marker

    def record(self, part: CompletedPart) -> None:
        self.parts[part.part_number] = part
        self.bytes_done += part.size

    async def upload_part(
        self, part_number: int, body: io.BytesIO, size: int, checksum: dict[str, str]
    ) -> CompletedPart:
        assert self.upload_id is not None
        self.emitter.emit(PartStarted(part_number, size))
        params: dict[str, Any] = {
            **self._ids(),
            "UploadId": self.upload_id,
            "PartNumber": part_number,
            "Body": body,
            "ContentLength": size,
            **checksum,
        }
        response = await self.call(
            "upload_part", params, part_number=part_number, before_attempt=lambda: body.seek(0)
        )
        part = CompletedPart(part_number, str(response["ETag"]), size, _crc32c(response, checksum))
        self._part_done(part)
        return part

    async def put_object(
        self, body: io.BytesIO, size: int, checksum: dict[str, str]
    ) -> CompletedPart:
        self.emitter.emit(PartStarted(1, size))
        params: dict[str, Any] = {**self._ids(), "Body": body, "ContentLength": size, **checksum}
        response = await self.call(
            "put_object", params, part_number=1, before_attempt=lambda: body.seek(0)
        )
        part = CompletedPart(1, str(response.get("ETag", "")), size, _crc32c(response, checksum))
        self._part_done(part)
        return part

    def _part_done(self, part: CompletedPart) -> None:
        self.record(part)
        logger.debug(
            "part %d/%d done (%d bytes, etag %s)",
            part.part_number,
            self.plan.part_count,
            part.size,
            part.etag,
        )
        self.emitter.emit(PartDone(part.part_number, part.size, part.etag))

    async def list_uploads(self) -> list[tuple[str, str]]:
        """``(key, upload_id)`` of every multipart upload in progress under
        our key (``ListMultipartUploads`` with ``Prefix`` = the key, all
        pages); only those whose key is exactly ours are returned."""
        found: list[tuple[str, str]] = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.key}
        while True:
            page = await self.call("list_multipart_uploads", params, max_attempts=3)
            for item in page.get("Uploads", []) or []:
                if item.get("Key") == self.key and item.get("UploadId"):
                    found.append((str(item["Key"]), str(item["UploadId"])))
            if not page.get("IsTruncated"):
                return found
            key_marker = page.get("NextKeyMarker")
            id_marker = page.get("NextUploadIdMarker")
            if not key_marker and not id_marker:
                return found
            params = {**params, "KeyMarker": key_marker or "", "UploadIdMarker": id_marker or ""}

    async def head(self) -> dict[str, Any] | None:
        """HEAD of our object; None when it does not exist."""
        try:
            return await self.call("head_object", self._ids(), max_attempts=3)
        except S3TransferError as err:
            if err.code in ("NoSuchKey", "404", "NotFound") or err.http_status == 404:
                return None
            raise

    async def object_is(self, size: int, etag: str | None) -> bool:
        """Is our object there with ``size`` bytes (and ``etag``, when known)?
        The CRC32C probe's object (:meth:`probe_crc32c`) never is."""
        head = await self.head()
        if head is None:
            return False
        if int(head.get("ContentLength", -1)) != size:
            return False
        if str(head.get("ETag", "")) == PROBE_ETAG:
            return False
        return etag is None or str(head.get("ETag", "")) == etag

    async def probe_crc32c(self) -> bool:
        """Does the endpoint check ``x-amz-checksum-crc32c``?

        Once per endpoint URL (cached for the process): a 20-byte
        ``PutObject`` of :data:`~aioims.transfer.checksums.PROBE_BODY` to our
        own key with a deliberately wrong CRC32C, through :meth:`call` (retries,
        credential refresh, classification).  Rejected with a checksum
        mismatch ⇒ honoured (nothing was written).  Accepted ⇒ ignored (moto,
        Ceph before Squid): the 20-byte object stays until the upload
        overwrites it — it is not deleted (upload credentials may not delete),
        and :meth:`object_is` never takes it for our object.  Any other
        outcome is ambiguous: False (Content-MD5), logged at DEBUG, not cached.
        """
        url = endpoint_url(self.clients.target.domain)
        known = cached_probe(url)
        if known is not None:
            return known
        body = io.BytesIO(PROBE_BODY)
        params: dict[str, Any] = {
            **self._ids(),
            "Body": body,
            "ContentLength": len(PROBE_BODY),
            "ChecksumCRC32C": probe_crc32c_value(),
        }
        try:
            await self.call(
                "put_object", params, max_attempts=3, before_attempt=lambda: body.seek(0),
                final=CHECKSUM_MISMATCH_CODES,
            )  # fmt: skip
        except S3TransferError as err:
            if err.code in CHECKSUM_MISMATCH_CODES:
                remember_probe(url, True)
                logger.debug("%s checks x-amz-checksum-crc32c (%s)", url, err.code)
                return True
            logger.debug("CRC32C probe on %s was ambiguous (%s): parts carry Content-MD5",
                         url, err)  # fmt: skip
            return False
        remember_probe(url, False)
        logger.info("%s ignores x-amz-checksum-crc32c: parts carry Content-MD5", url)
        return False

    async def complete(self) -> str:
        """Complete the upload; returns the object's ETag.

        An upload found gone (``NoSuchUpload``, radosgw's ``NoSuchKey``, or
        radosgw's ``InternalError`` for an aborted upload) is accepted when
        the object is there with exactly our size and multipart ETag: an
        earlier attempt (or an interrupted run) completed it.  An empty ETag
        in the answer (radosgw) is replaced by the computed multipart ETag.
        """
        assert self.upload_id is not None
        parts = [self.parts[n] for n in sorted(self.parts)]
        expected = multipart_etag(parts)
        listed: list[dict[str, Any]] = []
        for p in parts:
            item: dict[str, Any] = {"PartNumber": p.part_number, "ETag": p.etag}
            if self.checksum_algorithm == CRC32C_ALGORITHM and p.checksum_crc32c is not None:
                item["ChecksumCRC32C"] = p.checksum_crc32c
            listed.append(item)
        params = {**self._ids(), "UploadId": self.upload_id, "MultipartUpload": {"Parts": listed}}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.call("complete_multipart_upload", params, max_attempts=1)
                break
            except S3TransferError as err:
                gone = upload_gone(err.code, "CompleteMultipartUpload")
                if not (gone or err.transient):
                    raise
                # Gone, or a 5xx/lost answer: did an earlier attempt (or an
                # interrupted run) complete it?  radosgw answers 500 to
                # completing an aborted upload: look before retrying.
                if await self.object_is(self.plan.size, expected):
                    logger.debug("upload %s was already complete", self.upload_id)
                    return expected or ""
                if gone or not await self._upload_exists():
                    raise S3TransferError(
                        f"CompleteMultipartUpload: the upload {self.upload_id} no longer "
                        f"exists ({err.code}) and the object is not complete",
                        operation="CompleteMultipartUpload", code="NoSuchUpload",
                        attempts=attempt, http_status=err.http_status,
                        request_id=err.request_id, upload_id=self.upload_id,
                    ) from err  # fmt: skip
                if attempt >= self.config.max_attempts_per_part:
                    raise
                await anyio.sleep(self.backoff(attempt))
        logger.debug("multipart upload %s completed", self.upload_id)
        etag = str(response.get("ETag") or "")
        if not etag.strip('"'):
            etag = expected or ""
        return etag

    async def _upload_exists(self) -> bool:
        """Does our multipart upload still exist (ListParts answers)?"""
        assert self.upload_id is not None
        try:
            await self.call(
                "list_parts",
                {**self._ids(), "UploadId": self.upload_id, "MaxParts": 1},
                max_attempts=2,
            )
        except S3TransferError as err:
            # Cannot tell (another error): assume it does; the retry decides.
            return not upload_gone(err.code, "ListParts")
        return True

    async def abort(self, upload_id: str | None = None) -> bool:
        """Abort ``upload_id`` (default: ours); bounded by ``abort_timeout``
        and shielded.  True when we aborted it or it was already gone (the
        caller checks whether a gone upload had been completed)."""
        upload_id = upload_id or self.upload_id
        if upload_id is None:
            return True
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.config.abort_timeout):
            try:
                await self.call(
                    "abort_multipart_upload",
                    {**self._ids(), "UploadId": upload_id},
                    max_attempts=min(3, self.config.max_attempts_per_part),
                )
            except S3TransferError as err:
                if upload_gone(err.code, "AbortMultipartUpload"):
                    return True
                logger.warning("could not abort multipart upload %s: %s", upload_id, err)
                return False
            logger.debug("multipart upload %s aborted", upload_id)
            return True
        logger.warning(
            "aborting multipart upload %s timed out after %.0f s",
            upload_id,
            self.config.abort_timeout,
        )
        return False


def _crc32c(response: dict[str, Any], sent: dict[str, str]) -> str | None:
    """A part's CRC32C: what S3 answered, else what was sent (None: neither)."""
    value = response.get("ChecksumCRC32C") or sent.get("ChecksumCRC32C")
    return str(value) if value else None


def upload_gone(code: str | None, operation: str) -> bool:
    """Does this error code mean the multipart upload no longer exists?
    (The classification lives in :mod:`aioims.transfer.s3`.)"""
    from . import s3

    rule = getattr(s3, "is_upload_gone", None)
    if rule is not None:
        return bool(rule(code, operation))
    return code == "NoSuchUpload" or (
        code == "NoSuchKey"
        and operation
        in ("ListParts", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload")
    )
