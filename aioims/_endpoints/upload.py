"""Upload handshake (prepare/done) and the streamed image download."""

# The public API takes `timeout=` by design (per-call override), hence:
# ruff: noqa: ASYNC109

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from .._protocol import quote_segment
from .._transport import StreamResponse
from ..config import RetryPolicy
from ..errors import ChecksumMismatchError, ConnectionFailedError, ValidationError
from ..models import Image, ImageStatus, UploadResult, UploadTarget
from ..validation import check_id, check_non_negative, check_positive, check_upload_result
from ._base import EndpointBase, parse_model

if TYPE_CHECKING:
    from ..transfer.events import EventStream, ProgressCallback

DEFAULT_CHUNK_SIZE = 1 << 20


class BinaryWritable(Protocol):
    """A binary file object (``write(bytes)``; sync or async)."""

    def write(self, data: bytes, /) -> Any: ...


def _image_path(image_id: str, suffix: str) -> str:
    return f"/private-images/{quote_segment(check_id(image_id))}{suffix}"


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _check_complete(response: StreamResponse, written: int) -> None:
    expected = response.content_length
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    if expected is not None and not encoded and written != expected:
        raise ConnectionFailedError(
            f"download truncated: got {written} of {expected} bytes",
            request_id=response.request_id,
            http_status=response.status,
        )


class UploadEndpoints(EndpointBase):
    """upload-prepare, upload-done and file download."""

    async def upload_prepare(
        self,
        image_id: str,
        *,
        size: int,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> UploadTarget:
        """Temporary S3 credentials, bucket, key and endpoint for the file of
        ``size`` bytes. ``POST /private-images/{image_id}/upload-prepare``"""
        path = _image_path(image_id, "/upload-prepare")
        body = {"size": check_non_negative(size, "size")}
        envelope = await self._call("POST", path, json_body=body, timeout=timeout, retry=retry)
        return parse_model(envelope, UploadTarget)

    async def upload_done(
        self,
        image_id: str,
        *,
        result: UploadResult | str,
        upload_id: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Report the outcome (``success``/``failed``) of the file upload.
        ``POST /private-images/{image_id}/upload-done``"""
        path = _image_path(image_id, "/upload-done")
        body: dict[str, Any] = {"result": check_upload_result(result)}
        if upload_id is not None:
            if not isinstance(upload_id, str):
                raise ValidationError("upload_id: must be a string", field="upload_id")
            body["uploadId"] = upload_id
        await self._call("POST", path, json_body=body, timeout=timeout, retry=retry)

    async def download_private_image(
        self,
        image_id: str,
        dest: str | os.PathLike[str] | BinaryWritable,
        *,
        resume: bool = False,
        verify: bool = True,
        progress: ProgressCallback | EventStream | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> int:
        """Stream the image file to ``dest`` and return the bytes written.
        ``GET /private-images/{image_id}/file``

        ``dest`` is a path — written to ``<dest>.part`` and renamed when
        complete, so a partial file never carries the final name — or a
        binary file object (sync writes run in a worker thread; an async
        ``write`` is awaited).  Memory stays bounded by ``chunk_size``.
        ``timeout`` bounds connecting and each read, not the whole transfer.

        ``verify`` (default) reads the image first and, when it is ``active``,
        checks the bytes' count and MD5 against its ``size`` and ``checksum``
        (:class:`~aioims.ChecksumMismatchError`).  ``resume`` continues an
        existing ``<dest>.part`` with a Range request; ``progress`` receives
        transfer events; both need a path.  Path downloads with any of these
        options run :func:`aioims.transfer.download.download_to_path`.
        """
        path = _image_path(image_id, "/file")
        check_positive(chunk_size, "chunk_size")
        extras = resume or verify or progress is not None
        if isinstance(dest, (str, os.PathLike)):
            target = Path(os.fspath(dest))
            if not target.name:
                raise ValidationError(f"dest: not a file path: {dest!r}", field="dest")
            if extras:
                from ..transfer.download import download_to_path  # heavy: imported lazily

                return await download_to_path(
                    self,  # type: ignore[arg-type]  # always an IMSSession
                    image_id,
                    target,
                    path,
                    resume=resume,
                    verify=verify,
                    progress=progress,
                    chunk_size=chunk_size,
                    timeout=timeout,
                    retry=retry,
                )
            return await self._download_to_path(path, target, chunk_size, timeout, retry)
        if not callable(getattr(dest, "write", None)):
            raise ValidationError("dest: must be a path or a binary file object", field="dest")
        if resume or progress is not None:
            raise ValidationError("dest: resume and progress need a file path", field="dest")
        expected: tuple[int | None, str | None] = (None, None)
        if verify:
            expected = await self._expected_file(image_id, timeout, retry)
        return await self._download_to_file(path, dest, chunk_size, timeout, retry, expected)

    async def _expected_file(
        self, image_id: str, timeout: float | None, retry: RetryPolicy | None
    ) -> tuple[int | None, str | None]:
        """(size, md5) the file must have — known once the image is active."""
        envelope = await self._call(
            "GET", f"/images/{quote_segment(image_id)}", timeout=timeout, retry=retry
        )
        image = parse_model(envelope, Image)
        if image.status != ImageStatus.ACTIVE:
            return None, None
        return image.size, (image.checksum or "").lower() or None

    async def _download_to_path(
        self,
        path: str,
        target: Path,
        chunk_size: int,
        timeout: float | None,
        retry: RetryPolicy | None,
    ) -> int:
        part = target.with_name(target.name + ".part")
        written = 0
        async with self._stream("GET", path, timeout=timeout, retry=retry) as response:
            try:
                async with await anyio.open_file(part, "wb") as out:
                    async for chunk in response.iter_chunks(chunk_size):
                        await out.write(chunk)
                        written += len(chunk)
                    _check_complete(response, written)
                    await out.flush()
                    await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
                await anyio.to_thread.run_sync(os.replace, part, target)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_remove_quietly, part)
                raise
        return written

    async def _download_to_file(
        self,
        path: str,
        dest: BinaryWritable,
        chunk_size: int,
        timeout: float | None,
        retry: RetryPolicy | None,
        expected: tuple[int | None, str | None] = (None, None),
    ) -> int:
        written = 0
        expected_size, expected_md5 = expected
        digest = hashlib.md5(usedforsecurity=False) if expected_md5 else None
        write_is_async = inspect.iscoroutinefunction(dest.write)

        def hash_and_write(chunk: bytes) -> None:
            if digest is not None:
                digest.update(chunk)
            dest.write(chunk)

        async with self._stream("GET", path, timeout=timeout, retry=retry) as response:
            async for chunk in response.iter_chunks(chunk_size):
                if write_is_async:
                    if digest is not None:
                        await anyio.to_thread.run_sync(digest.update, chunk)
                    await dest.write(chunk)
                else:
                    await anyio.to_thread.run_sync(hash_and_write, chunk)
                written += len(chunk)
            _check_complete(response, written)
            if expected_size is not None and written != expected_size:
                raise ConnectionFailedError(
                    f"downloaded {written} bytes, the image has {expected_size}",
                    request_id=response.request_id,
                    http_status=response.status,
                )
            if digest is not None and digest.hexdigest() != expected_md5:
                raise ChecksumMismatchError(
                    f"downloaded data MD5 {digest.hexdigest()} differs from the image "
                    f"checksum {expected_md5}",
                    expected=str(expected_md5),
                    actual=digest.hexdigest(),
                )
        flush = getattr(dest, "flush", None)
        if callable(flush):
            if inspect.iscoroutinefunction(flush):
                await flush()
            else:
                await anyio.to_thread.run_sync(flush)
        return written
