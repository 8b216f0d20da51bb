"""Background transitions ``saving`` -> ``active`` / ``killed``.

Every job is a tracked asyncio task, cancelled and awaited on shutdown.
Jobs: ``verify`` (after ``upload-done``: the object exists, its size equals
the prepared size, its MD5), ``import`` (fetch an http(s) URL into S3) and
``copy`` (server-side copy of a shared image's file).  A job never raises:
any failure ends the image in ``killed`` with ``errMessage``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
from botocore.exceptions import ClientError

from ..models import ImageStatus
from .context import utcnow
from .storage import CHUNK, is_missing
from .store import ImageRecord

if TYPE_CHECKING:
    from .context import Services

log = logging.getLogger("aioims.emulator")

GIB = 1024**3


class Worker:
    def __init__(self) -> None:
        self.services: Services | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    @property
    def svc(self) -> Services:
        assert self.services is not None
        return self.services

    # --- task tracking ------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def idle(self) -> None:
        """Wait until no job is running (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> int:
        """Cancel every running job and wait for them (the worker stays usable)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def shutdown(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- transitions ------------------------------------------------------------

    async def _update(self, image_id: str, change: Callable[[ImageRecord], None]) -> None:
        """Apply *change* to a ``saving`` image under its lock."""
        async with self.svc.locks(image_id):
            record = await self.svc.store.get_image(image_id)
            if record is None or record.status != ImageStatus.SAVING.value:
                return
            change(record)
            record.image.updated_at = utcnow()
            record.job = ""
            await self.svc.store.save_image(record)

    async def kill(self, image_id: str, message: str) -> None:
        log.info("image %s killed: %s", image_id, message)

        def change(record: ImageRecord) -> None:
            record.image.status = ImageStatus.KILLED
            record.image.err_message = message
            record.image.progress = 0

        await self._update(image_id, change)

    async def activate(self, image_id: str, checksum: str, size: int) -> None:
        def change(record: ImageRecord) -> None:
            record.image.status = ImageStatus.ACTIVE
            record.image.checksum = checksum
            record.image.size = size
            record.image.progress = 100
            record.image.err_message = ""

        self.svc.lost.discard(image_id)
        await self._update(image_id, change)

    async def _guard(self, image_id: str, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("background job for %s failed", image_id)
            with anyio.CancelScope(shield=True):
                await self.kill(image_id, f"IMG.Internal.Error: {type(exc).__name__}: {exc}")

    async def _delay_and_kill(self, image_id: str, *, upload: bool) -> bool:
        """Apply the fault settings; ``True`` when the image was killed."""
        delay = self.svc.faults.activate_delay
        if delay > 0:
            await anyio.sleep(delay)
        if self.svc.faults.should_kill(image_id, upload=upload):
            await self.kill(image_id, "IMG.OperationFailed.UploadError: killed by fault injection")
            return True
        return False

    # --- jobs -----------------------------------------------------------------------

    def start_verify(self, image_id: str) -> None:
        self.spawn(self._guard(image_id, lambda: self._verify(image_id)), f"verify {image_id}")

    async def _verify(self, image_id: str) -> None:
        if await self._delay_and_kill(image_id, upload=True):
            return
        record = await self.svc.store.get_image(image_id)
        if record is None or record.status != ImageStatus.SAVING.value:
            return
        where = f"{record.bucket}/{record.object_key}"
        size = await self.svc.storage.head(record.bucket, record.object_key)
        if size is None:
            await self.kill(
                image_id, f"IMG.OperationFailed.UploadError: no file was uploaded to {where}"
            )
            return
        if size != record.prepared_size:
            await self.kill(
                image_id,
                f"IMG.OperationFailed.ImageSize: the stored file has {size} bytes, "
                f"upload-prepare announced {record.prepared_size}",
            )
            return
        checksum, hashed = await self.svc.storage.md5(record.bucket, record.object_key)
        await self.activate(image_id, checksum, hashed)

    def start_import(self, image_id: str, url: str) -> None:
        self.spawn(self._guard(image_id, lambda: self._import(image_id, url)), f"import {image_id}")

    async def _import(self, image_id: str, url: str) -> None:
        record = await self.svc.store.get_image(image_id)
        if record is None:
            return
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
            self._http = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._http.get(url) as answer:
                if answer.status != 200:
                    await self.kill(
                        image_id,
                        f"IMG.OperationFailed.UploadError: fetching {url} answered "
                        f"HTTP {answer.status}",
                    )
                    return
                checksum, size = await self.svc.storage.put_stream(
                    record.bucket, record.object_key, answer.content.iter_chunked(CHUNK)
                )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            await self.kill(
                image_id, f"IMG.OperationFailed.UploadError: fetching {url} failed: {exc!r}"
            )
            return
        min_disk = record.image.min_disk or 0
        if size == 0 or size > min_disk * GIB:
            await self.svc.storage.delete(record.bucket, record.object_key)
            problem = (
                "IMG.OperationFailed.UploadError: the imported file is empty"
                if size == 0
                else f"IMG.OperationFailed.MinDiskSize: the file ({size} bytes) exceeds "
                f"minDisk ({min_disk} GiB)"
            )
            await self.kill(image_id, problem)
            return
        if await self._delay_and_kill(image_id, upload=False):
            return
        await self.activate(image_id, checksum, size)

    def start_copy(self, image_id: str, source: ImageRecord) -> None:
        self.spawn(self._guard(image_id, lambda: self._copy(image_id, source)), f"copy {image_id}")

    async def _copy(self, image_id: str, source: ImageRecord) -> None:
        record = await self.svc.store.get_image(image_id)
        if record is None:
            return
        try:
            await self.svc.storage.copy(
                source.bucket,
                source.object_key,
                record.bucket,
                record.object_key,
                source.image.size or 0,
            )
        except ClientError as exc:
            if not is_missing(exc):
                raise
            await self.kill(
                image_id,
                f"IMG.OperationFailed.UploadError: the file of {source.image_id} was lost",
            )
            return
        if await self._delay_and_kill(image_id, upload=False):
            return
        await self.activate(image_id, source.image.checksum or "", source.image.size or 0)

    # --- restart ----------------------------------------------------------------------

    async def resume(self) -> None:
        """Pick up images left in ``saving`` by a previous run."""
        for record in await self.svc.store.images_in_status(ImageStatus.SAVING.value):
            if record.job == "verify":
                log.info("resuming the verification of %s", record.image_id)
                self.start_verify(record.image_id)
            else:
                await self.kill(
                    record.image_id,
                    f"IMG.OperationFailed.UploadError: the {record.job or 'transfer'} was "
                    "interrupted by an emulator restart",
                )
