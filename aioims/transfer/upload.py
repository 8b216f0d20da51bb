"""Upload a file: single PutObject below the threshold, else a concurrent,
resumable multipart upload — through the one driver
(:mod:`aioims.transfer.driver`) with a :class:`~aioims.transfer.sources.FileSource`.

Parts are read with ``os.pread`` in worker threads (their Content-MD5 in
the same thread call); a slot is taken before a part is read, so at most
``max_concurrency`` part buffers are alive.  The whole-file MD5 is computed
on the way from the same buffers (see :mod:`aioims.transfer.hashing`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..models.upload import UploadTarget
from .checkpoint import FilePartJournal
from .config import TransferConfig
from .driver import check_target, drive
from .events import EventStream, ProgressCallback
from .results import TransferResult
from .s3 import RefreshCallable
from .sources import FileSource

__all__ = ["upload_file"]


async def upload_file(
    target: UploadTarget,
    path: str | os.PathLike[str],
    *,
    config: TransferConfig | None = None,
    progress: ProgressCallback | EventStream | None = None,
    refresh: RefreshCallable | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    image_id: str | None = None,
    md5: bool = True,
) -> TransferResult:
    """Upload the file at ``path`` to ``target.bucket``/``target.file``.

    ``refresh``: async callable returning a new :class:`UploadTarget` (same
    bucket and key) when S3 rejects the credentials or ``target.expires_at``
    is near.  ``checkpoint``: a JSON file that makes the upload resumable (no
    secrets in it; deleted on success); ``image_id`` is recorded in it.
    ``md5``: compute the whole-file MD5 (``result.md5``).

    Raises :class:`aioims.errors.ValidationError` (bad config/target, too
    large) before anything is sent, :class:`PartUploadError`,
    :class:`CredentialsExpiredError`, :class:`S3TransferError` or
    :class:`SourceChangedError`.
    """
    config = config if config is not None else TransferConfig()
    check_target(target)
    journal = (
        FilePartJournal.at(Path(checkpoint), config.checkpoint_interval)
        if checkpoint is not None
        else None
    )
    return await drive(
        target, FileSource(path), config=config, progress=progress, refresh=refresh,
        journal=journal, image_id=image_id, md5=md5,
    )  # fmt: skip
