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
    StatusChanged,
    TransferCompleted,
    TransferEvent,
    TransferFailed,
    TransferStarted,
)
from .results import CompletedPart, TransferResult
from .s3 import CREDENTIAL_ERROR_CODES, RefreshCallable
from .stream import upload_fileobj, upload_stream
from .upload import upload_file

__all__ = [
    "CREDENTIAL_ERROR_CODES",
    "MAX_OBJECT_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "BytesSent",
    "CompletedPart",
    "CredentialsExpiredError",
    "CredentialsRefreshed",
    "EventStream",
    "GiB",
    "KiB",
    "MiB",
    "PartDone",
    "PartLimiter",
    "PartPlan",
    "PartRetried",
    "PartStarted",
    "PartUploadError",
    "ProgressCallback",
    "RefreshCallable",
    "S3TransferError",
    "SourceChangedError",
    "StatusChanged",
    "TiB",
    "TransferCompleted",
    "TransferConfig",
    "TransferEvent",
    "TransferFailed",
    "TransferResult",
    "TransferStarted",
    "adjust_part_size",
    "plan_parts",
    "upload_file",
    "upload_fileobj",
    "upload_stream",
]
