"""The transfer engine: concurrent, resumable, bounded-memory S3 uploads to
the temporary target that ``upload-prepare`` hands out.

::

    from aioims.transfer import TransferConfig, upload_file

    result = await upload_file(
        target, "disk.qcow2",
        config=TransferConfig(part_size=16 * MiB, max_concurrency=8),
        progress=print, refresh=refresh_credentials, checkpoint="disk.qcow2.upload.json",
    )
    result.upload_id, result.parts, result.md5, result.size

See ``docs/uploading.md``.
"""

from ._emitting import run_with_emitter
from .checkpoint import Checkpoint, FilePartJournal, JournalFile, PartJournal, SourceIdentity
from .config import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    GiB,
    KiB,
    MiB,
    PartLimiter,
    PartPlan,
    TiB,
    TransferConfig,
    adjust_part_size,
    plan_parts,
)
from .driver import drive
from .errors import (
    CredentialsExpiredError,
    PartUploadError,
    S3TransferError,
    SourceChangedError,
)
from .events import (
    BytesSent,
    CredentialsRefreshed,
    EventStream,
    PartDone,
    PartRetried,
    PartStarted,
    ProgressCallback,
    StageChanged,
    StatusChanged,
    TransferCompleted,
    TransferEvent,
    TransferFailed,
    TransferStarted,
)
from .results import CompletedPart, TransferResult
from .s3 import CREDENTIAL_ERROR_CODES, RefreshCallable
from .sources import (
    FileSource,
    OpenAt,
    PartSource,
    ReopenableSource,
    StreamSource,
)
from .stream import upload_fileobj, upload_stream, upload_stream_resumable
from .upload import upload_file

__all__ = [
    "CREDENTIAL_ERROR_CODES",
    "MAX_OBJECT_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "BytesSent",
    "Checkpoint",
    "CompletedPart",
    "CredentialsExpiredError",
    "CredentialsRefreshed",
    "EventStream",
    "FilePartJournal",
    "FileSource",
    "GiB",
    "JournalFile",
    "KiB",
    "MiB",
    "OpenAt",
    "PartDone",
    "PartJournal",
    "PartLimiter",
    "PartPlan",
    "PartRetried",
    "PartSource",
    "PartStarted",
    "PartUploadError",
    "ProgressCallback",
    "RefreshCallable",
    "ReopenableSource",
    "S3TransferError",
    "SourceChangedError",
    "SourceIdentity",
    "StageChanged",
    "StatusChanged",
    "StreamSource",
    "TiB",
    "TransferCompleted",
    "TransferConfig",
    "TransferEvent",
    "TransferFailed",
    "TransferResult",
    "TransferStarted",
    "adjust_part_size",
    "drive",
    "plan_parts",
    "run_with_emitter",
    "upload_file",
    "upload_fileobj",
    "upload_stream",
    "upload_stream_resumable",
]
