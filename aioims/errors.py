"""Typed errors.

::

    IMSError                              every error raised by aioims
    ├── ValidationError (ValueError)      bad input caught before anything is sent
    ├── TransportError                    connection failure, timeout, 5xx, non-JSON
    │   ├── ConnectionFailedError
    │   ├── RequestTimeoutError (TimeoutError)
    │   ├── ServerHTTPError               HTTP 5xx / 429 without an IMG.* envelope
    │   └── DecodeError                   a body that is not the vendor envelope
    ├── ApiError                          an IMG.* code from the service
    │   ├── InvalidParameterError         IMG.InvalidParameter
    │   ├── NotFoundError                 IMG.DBGet.NoData
    │   ├── ServiceError                  IMG.DB*.Fail, IMG.Internal.Error (transient)
    │   ├── PermissionDeniedError         IMG.OperationDenied.Identity
    │   │   └── AuthenticationError       IMG.OperationDenied.AuthFail, ...UserInfo
    │   ├── QuotaError                    IMG.OperationDenied.Quota*, IMG.OperationFailed.Transfer
    │   ├── InvalidStateError             ...ActionNotMatchStatus, ...NotAllowed
    │   ├── ShareError                    IMG.OperationFailed.{ActionNotMatch,DuplicateUserId,...}
    │   ├── UploadRejectedError           IMG.OperationFailed.{ImageSize,UploadError,UploadNot*}
    │   ├── MinDiskError                  IMG.OperationFailed.{MinDiskSize,ModifyMinDiskSize}
    │   └── OperationFailedError          other IMG.OperationFailed.* codes
    └── TransferError                     upload/download orchestration failures
        ├── UploadFailedError             carries image_id and the stage that failed
        │   └── ImageKilledError          the image ended in ``killed``
        ├── ChecksumMismatchError
        └── WaitTimeoutError (TimeoutError)

Each :class:`ApiError` carries ``code``, ``message``, ``request_id`` and
``http_status``.  Some codes belong to two families and their class inherits
from both (``IMG.OperationFailed.UploadNotAllowed`` is an
:class:`UploadRejectedError` *and* an :class:`InvalidStateError`).
"""

from __future__ import annotations

from typing import Any


class IMSError(Exception):
    """Base of every aioims error."""

    code: str | None
    message: str
    request_id: str | None
    http_status: int | None

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.http_status = http_status

    def __str__(self) -> str:
        parts = []
        if self.code:
            parts.append(self.code)
        parts.append(self.message or type(self).__name__)
        text = ": ".join(parts)
        details = []
        if self.http_status is not None:
            details.append(f"http_status={self.http_status}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        return f"{text} ({', '.join(details)})" if details else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"request_id={self.request_id!r}, http_status={self.http_status!r})"
        )


class ValidationError(IMSError, ValueError):
    """Input the reference rules out, detected before any request is sent."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, code="ClientValidation")
        self.field = field


class JournalMismatchError(ValidationError):
    """A journal (checkpoint) belongs to another upload: another account,
    other image metadata, or a file that changed after its image was
    uploaded.  Nothing was sent; ``differs`` names what does not match."""

    def __init__(self, message: str, *, path: str | None, differs: list[str]) -> None:
        super().__init__(message, field="checkpoint")
        self.path = path
        self.differs = differs


# --- transport -------------------------------------------------------------


class TransportError(IMSError):
    """The request did not produce a valid IMS envelope."""


class ConnectionFailedError(TransportError):
    """Could not connect, or the connection broke."""


class RequestTimeoutError(TransportError, TimeoutError):
    """The request (or the whole retry deadline) timed out."""


class ServerHTTPError(TransportError):
    """HTTP 5xx or 429 without an IMS error envelope."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class DecodeError(TransportError):
    """The body is not JSON or not the vendor envelope."""


# --- API (IMG.*) ------------------------------------------------------------


class ApiError(IMSError):
    """The service answered with an ``IMG.*`` error code."""


class InvalidParameterError(ApiError):
    """``IMG.InvalidParameter``."""


class NotFoundError(ApiError):
    """``IMG.DBGet.NoData``: the resource does not exist."""


class ServiceError(ApiError):
    """A transient failure inside the service (retried on idempotent calls)."""


class PermissionDeniedError(ApiError):
    """No permission on this resource."""


class AuthenticationError(PermissionDeniedError):
    """Authentication failed or user info could not be obtained."""


class QuotaError(ApiError):
    """A quota check or deduction failed."""


class InvalidStateError(ApiError):
    """The action does not match the image's state."""


class ShareError(ApiError):
    """A share/unshare rule was broken."""


class UploadRejectedError(ApiError):
    """The service refused or failed an upload step."""


class MinDiskError(ApiError):
    """A minimum-disk rule was broken."""


class OperationFailedError(ApiError):
    """Another ``IMG.OperationFailed.*`` code."""


class UploadNotAllowedError(UploadRejectedError, InvalidStateError):
    """``IMG.OperationFailed.UploadNotAllowed``."""


class DownloadNotAllowedError(InvalidStateError):
    """``IMG.OperationFailed.DownloadNotAllowed`` (both spellings)."""


class DeleteNotAllowedError(InvalidStateError):
    """``IMG.OperationFailed.DeleteNotAllowed``."""


class ImageIsSharedError(ShareError, InvalidStateError):
    """``IMG.OperationFailed.ImageIsShared``: unshare before deleting."""


ERROR_CODES: dict[str, type[ApiError]] = {
    "IMG.InvalidParameter": InvalidParameterError,
    "IMG.DBGet.Fail": ServiceError,
    "IMG.DBUpdate.Fail": ServiceError,
    "IMG.DBGet.NoData": NotFoundError,
    "IMG.Internal.Error": ServiceError,
    "IMG.OperationFailed.ImageSize": UploadRejectedError,
    "IMG.OperationFailed.UploadError": UploadRejectedError,
    "IMG.OperationDenied.ActionNotMatchStatus": InvalidStateError,
    "IMG.OperationFailed.MinDiskSize": MinDiskError,
    "IMG.OperationFailed.UploadNotAllowed": UploadNotAllowedError,
    "IMG.OperationFailed.DownloadNotAllowed": DownloadNotAllowedError,
    "IMG.OperationFailed.DownloadNotallowed": DownloadNotAllowedError,
    "IMG.OperationFailed.DeleteNotAllowed": DeleteNotAllowedError,
    "IMG.OperationFailed.UploadNotPermission": UploadRejectedError,
    "IMG.OperationFailed.UserInfo": AuthenticationError,
    "IMG.OperationDenied.Identity": PermissionDeniedError,
    "IMG.OperationDenied.Quota": QuotaError,
    "IMG.OperationDenied.QuotaNotEnough": QuotaError,
    "IMG.OperationDenied.QuotaDeduct": QuotaError,
    "IMG.OperationFailed.Transfer": QuotaError,
    "IMG.OperationDenied.AuthFail": AuthenticationError,
    "IMG.OperationFailed.ResourceCenter": OperationFailedError,
    "IMG.OperationFailed.ModifyMinDiskSize": MinDiskError,
    "IMG.OperationFailed.ActionNotMatch": ShareError,
    "IMG.OperationFailed.DuplicateUserId": ShareError,
    "IMG.OperationFailed.InvalidUserId": ShareError,
    "IMG.OperationFailed.AlreadyShared": ShareError,
    "IMG.OperationFailed.NotShared": ShareError,
    "IMG.OperationFailed.ResourceInfo": OperationFailedError,
    "IMG.OperationFailed.ResourceStatus": InvalidStateError,
    "IMG.OperationFailed.ImageIsShared": ImageIsSharedError,
}

#: Codes worth a retry (on idempotent calls only).
TRANSIENT_CODES: frozenset[str] = frozenset(
    {"IMG.DBGet.Fail", "IMG.DBUpdate.Fail", "IMG.Internal.Error"}
)


def error_class_for(code: str) -> type[ApiError]:
    """The exception class for an ``IMG.*`` code (unknown codes by prefix)."""
    cls = ERROR_CODES.get(code)
    if cls is not None:
        return cls
    if code.startswith("IMG.OperationDenied."):
        return PermissionDeniedError
    if code.startswith("IMG.OperationFailed."):
        return OperationFailedError
    if code.startswith("IMG.DB"):
        return ServiceError
    return ApiError


# --- transfer orchestration ------------------------------------------------


class TransferError(IMSError):
    """An upload or download could not be completed."""


class UploadFailedError(TransferError):
    """The upload of an image failed at ``stage`` (create, prepare, transfer,
    done, wait, verify).  ``__cause__`` holds the underlying error."""

    def __init__(
        self,
        message: str,
        *,
        image_id: str | None = None,
        stage: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        resumable: bool = False,
        upload_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, http_status=http_status)
        self.image_id = image_id
        self.stage = stage
        #: True when running the same upload again (same journal/checkpoint)
        #: continues where this one stopped.
        self.resumable = resumable
        #: The multipart upload concerned, if one was open.
        self.upload_id = upload_id


class ImageKilledError(UploadFailedError):
    """The service moved the image to ``killed`` (it rejected the file)."""


class ChecksumMismatchError(TransferError):
    """A computed MD5 differs from the expected one."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message, code="ChecksumMismatch")
        self.expected = expected
        self.actual = actual


class WaitTimeoutError(TransferError, TimeoutError):
    """The image did not reach the wanted status in time."""

    def __init__(self, message: str, *, image_id: str, last_status: str | None) -> None:
        super().__init__(message, code="WaitTimeout")
        self.image_id = image_id
        self.last_status = last_status
