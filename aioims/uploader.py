"""Upload image files through the full IMS flow (create → prepare → transfer
→ done → wait → verify), resumably::

    async with IMSSession(...) as ims:
        image = await ims.upload_image("disk.qcow2", ImageSpec(name="web", ...))

    # or, with every knob:
    uploader = Uploader(ims, config=TransferConfig(max_concurrency=16),
                        checkpoint_dir="~/.cache/aioims/checkpoints")
    image = await uploader.upload("disk.qcow2", spec)

The work is done by the one lifecycle coordinator
(:class:`aioims.lifecycle.Coordinator`) with a file journal
(:class:`aioims.lifecycle.FileJournal`) when a checkpoint is used.

Failure handling (see ``docs/uploading.md``):

* any failure after the image exists raises :class:`~aioims.UploadFailedError`
  with ``image_id``, ``stage`` (``create``, ``prepare``, ``transfer``,
  ``done``, ``wait``, ``verify``), ``resumable`` and ``upload_id``;
  ``killed`` raises :class:`~aioims.ImageKilledError`; invalid input raises
  :class:`~aioims.ValidationError` before anything is sent;
* without a checkpoint, a failed or cancelled transfer is aborted and the
  service is told ``upload_done(result="failed", uploadId=...)`` (the image
  goes ``killed``; its id can be uploaded to again with ``image_id=``) and,
  with ``delete_on_failure``, the image is deleted;
* with a checkpoint (``checkpoint_dir`` or ``checkpoint=``) every step's
  intent is journaled before the step: a run cancelled, failed (resumably)
  or killed at any point is continued by running the same upload again —
  one image, nothing re-sent that S3 already holds; the journal is deleted
  once the image is verified ``active``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .errors import ValidationError
from .lifecycle import Coordinator, FileJournal, JournalKey, SourceSpec, fingerprint
from .models import Image, ImageSpec
from .transfer import (
    EventStream,
    FileSource,
    ProgressCallback,
    TransferConfig,
    TransferEvent,
    run_with_emitter,
)
from .transfer.events import Emitter

if TYPE_CHECKING:
    from .session import IMSSession

__all__ = ["Uploader", "checkpoint_path_for", "md5_of_file"]

logger = logging.getLogger("aioims.uploader")


def checkpoint_path_for(
    directory: str | os.PathLike[str], path: str | os.PathLike[str], account: str = ""
) -> Path:
    """The checkpoint (journal) file an :class:`Uploader` keeps in
    ``directory`` for the source file ``path`` uploaded to ``account`` (a
    string naming the service: :meth:`Uploader.account`)."""
    key = str(Path(path).resolve())
    if account:
        key += "\0" + account
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(directory).expanduser() / f"upload-{digest}.json"


def _hash_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def md5_of_file(path: str | os.PathLike[str]) -> str:
    """The MD5 of a file, read in a worker thread."""
    return await anyio.to_thread.run_sync(_hash_file, Path(path))


def _file_identity(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ValidationError(f"no such file: {path}", field="path") from None
    if not path.is_file():
        raise ValidationError(f"not a regular file: {path}", field="path")
    if st.st_size <= 0:
        raise ValidationError(f"the file is empty: {path}", field="path")
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _ensure_private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


class Uploader:
    """Uploads image files through the full IMS flow.

    ``config``: the :class:`~aioims.transfer.TransferConfig` (part size,
    concurrency, TLS options...).  ``progress``: a callable, an async callable
    or an :class:`~aioims.transfer.EventStream` receiving the transfer events
    plus :class:`~aioims.transfer.StageChanged` and
    :class:`~aioims.transfer.StatusChanged`.  ``checkpoint_dir``: keep a
    resumable journal per source file and account there.
    ``delete_on_failure``: delete an image this uploader created when its
    upload fails for good.  ``verify``: compare the active image's size and
    MD5 with the file's.  ``poll_interval``: the longest pause between status
    polls while the service verifies the file (polls start 50 ms apart).
    """

    def __init__(
        self,
        ims: IMSSession,
        *,
        config: TransferConfig | None = None,
        progress: ProgressCallback | EventStream | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        delete_on_failure: bool = False,
        wait_timeout: float = 3600.0,
        poll_interval: float = 1.0,
        verify: bool = True,
    ) -> None:
        self.ims = ims
        self.config = config if config is not None else TransferConfig()
        self.progress = progress
        self.checkpoint_dir = Path(checkpoint_dir).expanduser() if checkpoint_dir else None
        self.delete_on_failure = delete_on_failure
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.verify = verify

    def account(self) -> str:
        """Names the service a journal file belongs to (endpoint and region;
        the tenant is checked inside the journal)."""
        return f"{self.ims.endpoint}|{self.ims.region}"

    async def upload(
        self,
        path: str | os.PathLike[str],
        spec: ImageSpec | Mapping[str, Any] | None = None,
        *,
        image_id: str | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        **create_kwargs: Any,
    ) -> Image:
        """Upload ``path`` and return the ``active`` image.

        ``spec``: the image to create (an :class:`~aioims.ImageSpec`, or the
        keyword arguments of :meth:`IMSSession.create_private_image` as a
        mapping or as ``**create_kwargs``).  ``image_id``: upload into this
        existing ``queued``/``killed`` image instead.  ``checkpoint``: the
        journal file (default: one in ``checkpoint_dir``, if set).
        """
        source_path = Path(path)
        resolved, size, mtime_ns = await anyio.to_thread.run_sync(_file_identity, source_path)
        if isinstance(spec, ImageSpec):
            # An ImageSpec: the session's tenant defaults, disk format and size from the file.
            spec = spec.with_defaults(self.ims.defaults)
            if spec.disk_format is None or spec.min_disk is None:
                spec = await anyio.to_thread.run_sync(spec.for_file, source_path)
        kwargs = _create_kwargs(spec, create_kwargs)
        tenant = kwargs.get("tenant_id") if kwargs else None
        if checkpoint is None and self.checkpoint_dir is not None:
            checkpoint = checkpoint_path_for(self.checkpoint_dir, source_path, self.account())
        journal: FileJournal | None = None
        if checkpoint is not None:
            checkpoint_path = Path(checkpoint)
            await anyio.to_thread.run_sync(_ensure_private_dir, checkpoint_path.parent)
            key = JournalKey(
                endpoint=str(self.ims.endpoint), region=str(self.ims.region),
                tenant=None if tenant is None else str(tenant), spec=fingerprint(kwargs),
                source=resolved, size=size, mtime_ns=mtime_ns,
            )  # fmt: skip
            journal = FileJournal(checkpoint_path, key, self.config.checkpoint_interval)
        if image_id is None and not kwargs and journal is None:
            raise ValidationError(
                "give the create_private_image arguments (name, disk_format, ...) "
                "or the image_id of an existing queued image",
                field="image_id",
            )
        source = SourceSpec(
            size=size,
            open=lambda: FileSource(source_path),
            description=str(source_path),
            md5_of=lambda: md5_of_file(source_path),
        )
        emitter = Emitter(self.progress)
        stream = self.progress if isinstance(self.progress, EventStream) else None
        close_stream = False
        if stream is not None and stream.close_on_terminal:
            # One stream for every stage: it ends when the whole upload does.
            stream.close_on_terminal = False
            close_stream = True

        def emit(event: TransferEvent) -> None:
            emitter.emit(event)

        coordinator = Coordinator(
            self.ims, config=self.config, emit=emit, wait_timeout=self.wait_timeout,
            poll_interval=self.poll_interval, verify=self.verify,
            delete_on_failure=self.delete_on_failure,
        )  # fmt: skip

        async def body() -> Image:
            image, _ = await coordinator.run(
                source, journal=journal, image_id=image_id, create_kwargs=kwargs or None
            )
            return image

        try:
            return await run_with_emitter(emitter, body)
        finally:
            if close_stream and stream is not None:
                stream.close()


def _create_kwargs(
    spec: ImageSpec | Mapping[str, Any] | None, extra: dict[str, Any]
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if spec is not None:
        to_kwargs = getattr(spec, "to_create_kwargs", None)
        if to_kwargs is not None:
            kwargs.update(to_kwargs())
        elif isinstance(spec, Mapping):
            kwargs.update(spec)
        else:
            raise ValidationError(
                f"spec must be an aioims.ImageSpec or a mapping, got {type(spec).__name__}",
                field="spec",
            )
    kwargs.update(extra)
    return kwargs
