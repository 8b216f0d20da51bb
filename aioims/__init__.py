"""aioims: asyncio SDK for the CECSTACK Image Management Service (IMS) API v1."""

from typing import TYPE_CHECKING, Any

from ._protocol import PreparedRequest
from ._transport import StreamResponse
from ._version import __version__
from .auth import Auth, CallableAuth, HeaderAuth
from .config import RetryPolicy
from .errors import (
    ApiError,
    AuthenticationError,
    ChecksumMismatchError,
    ConnectionFailedError,
    DecodeError,
    DeleteNotAllowedError,
    DownloadNotAllowedError,
    ImageIsSharedError,
    ImageKilledError,
    IMSError,
    InvalidParameterError,
    InvalidStateError,
    JournalMismatchError,
    MinDiskError,
    NotFoundError,
    OperationFailedError,
    PermissionDeniedError,
    QuotaError,
    RequestTimeoutError,
    ServerHTTPError,
    ServiceError,
    ShareError,
    TransferError,
    TransportError,
    UploadFailedError,
    UploadNotAllowedError,
    UploadRejectedError,
    ValidationError,
    WaitTimeoutError,
)
from .logs import enable_debug_logging, install_redaction
from .models import (
    BootMode,
    CpuArch,
    DiskFormat,
    ExportBucket,
    Image,
    ImageShare,
    ImageSpec,
    ImageStatus,
    ImageType,
    Instruction,
    OsType,
    Page,
    Platform,
    TenantDefaults,
    UploadResult,
    UploadTarget,
    Usage,
    Visibility,
    VolumeImage,
)
from .pagination import F, Filter
from .session import IMSSession

if TYPE_CHECKING:
    from .uploader import Uploader


def __getattr__(name: str) -> Any:
    # The uploader pulls in aiobotocore: import it only when it is used.
    if name == "Uploader":
        from .uploader import Uploader

        return Uploader
    raise AttributeError(f"module 'aioims' has no attribute {name!r}")

__all__ = [
    "ApiError",
    "Auth",
    "AuthenticationError",
    "BootMode",
    "CallableAuth",
    "ChecksumMismatchError",
    "ConnectionFailedError",
    "CpuArch",
    "DecodeError",
    "DeleteNotAllowedError",
    "DiskFormat",
    "DownloadNotAllowedError",
    "ExportBucket",
    "F",
    "Filter",
    "HeaderAuth",
    "IMSError",
    "IMSSession",
    "Image",
    "ImageIsSharedError",
    "ImageKilledError",
    "ImageShare",
    "ImageSpec",
    "ImageStatus",
    "ImageType",
    "Instruction",
    "InvalidParameterError",
    "InvalidStateError",
    "JournalMismatchError",
    "MinDiskError",
    "NotFoundError",
    "OperationFailedError",
    "OsType",
    "Page",
    "PermissionDeniedError",
    "Platform",
    "PreparedRequest",
    "QuotaError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerHTTPError",
    "ServiceError",
    "ShareError",
    "StreamResponse",
    "TenantDefaults",
    "TransferError",
    "TransportError",
    "UploadFailedError",
    "UploadNotAllowedError",
    "UploadRejectedError",
    "UploadResult",
    "UploadTarget",
    "Uploader",
    "Usage",
    "ValidationError",
    "Visibility",
    "VolumeImage",
    "WaitTimeoutError",
    "__version__",
    "enable_debug_logging",
    "install_redaction",
]
