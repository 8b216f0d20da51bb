"""Upload handshake (prepare/done) and the streamed image download."""

# The public API takes `timeout=` by design (per-call override), hence:
# ruff: noqa: ASYNC109

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from .._protocol import quote_segment
from ..config import RetryPolicy
from ..errors import ChecksumMismatchError, ConnectionFailedError, ValidationError
from ..models import Image, ImageStatus, UploadResult, UploadTarget
from ..validation import check_id, check_non_negative, check_positive, check_upload_result
from ._base import EndpointBase, parse_model
from .download import ImageFile

if TYPE_CHECKING:
    from ..transfer.events import EventStream, ProgressCallback

DEFAULT_CHUNK_SIZE = 1 << 20


class BinaryWritable(Protocol):
    """A binary file object (``write(bytes)``; sync or async)."""

    def write(self, data: bytes, /) -> Any: ...


def _image_path(image_id: str, suffix: str) -> str:
    return f"/private-images/{quote_segment(check_id(image_id))}{suffix}"


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

    @contextlib.asynccontextmanager
    async def open_image_file(
        self,
        image_id: str,
        offset: int = 0,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[ImageFile]:
        """Open the image file from byte ``offset`` (HTTP Range):
        ``async with ims.open_image_file(image_id, offset) as f: async for
        chunk in f.chunks(): ...``.  ``GET /private-images/{image_id}/file``

        The one download primitive (``download_private_image`` and the
        migration use it): a server that ignores the range is read from the
        start and the head skipped, so the chunks always start at
        ``offset``; a truncated body raises
        :class:`~aioims.ConnectionFailedError`.  ``timeout`` bounds
        connecting and each read."""
        path = _image_path(image_id, "/file")
        offset = check_non_negative(offset, "offset")
        headers = {"Range": f"bytes={offset}-"} if offset else None
        async with self._stream("GET", path, headers=headers, timeout=timeout, retry=retry) as r:
            yield ImageFile(r, offset)

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
        check_id(image_id)
        check_positive(chunk_size, "chunk_size")
        if isinstance(dest, (str, os.PathLike)):
            target = Path(os.fspath(dest))
            if not target.name:
                raise ValidationError(f"dest: not a file path: {dest!r}", field="dest")
            from ..transfer.download import download_to_path  # heavy: imported lazily

            return await download_to_path(
                self,  # type: ignore[arg-type]  # always an IMSSession
                image_id,
                target,
                resume=resume,
                verify=verify,
                progress=progress,
                chunk_size=chunk_size,
                timeout=timeout,
                retry=retry,
            )
        if not callable(getattr(dest, "write", None)):
            raise ValidationError("dest: must be a path or a binary file object", field="dest")
        if resume or progress is not None:
            raise ValidationError("dest: resume and progress need a file path", field="dest")
        expected: tuple[int | None, str | None] = (None, None)
        if verify:
            expected = await self._expected_file(image_id, timeout, retry)
        return await self._download_to_file(image_id, dest, chunk_size, timeout, retry, expected)

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

    async def _download_to_file(
        self,
        image_id: str,
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

        async with self.open_image_file(image_id, timeout=timeout, retry=retry) as file:
            async for chunk in file.chunks(chunk_size):
                if write_is_async:
                    if digest is not None:
                        await anyio.to_thread.run_sync(digest.update, chunk)
                    await dest.write(chunk)
                else:
                    await anyio.to_thread.run_sync(hash_and_write, chunk)
                written += len(chunk)
            if expected_size is not None and written != expected_size:
                raise ConnectionFailedError(
                    f"downloaded {written} bytes, the image has {expected_size}",
                    request_id=file.request_id,
                    http_status=file.status,
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
