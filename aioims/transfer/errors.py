"""Errors of the transfer engine (all :class:`aioims.errors.TransferError`).

::

    TransferError
    └── S3TransferError           an S3 operation failed for good
        ├── PartUploadError       ... while uploading one part (``part_number``)
        ├── CredentialsExpiredError  S3 rejected the credentials and no (more)
        │                         refresh was possible
    └── SourceChangedError        the file changed (or the stream had the wrong
                                  size) while it was being uploaded

Every error says whether the multipart upload was aborted (``aborted``) and
whether a later run with the same checkpoint can resume it (``resumable``);
see ``docs/uploading.md`` for the rules.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..errors import TransferError

_E = TypeVar("_E", bound=Any)


class S3TransferError(TransferError):
    """An S3 request of a transfer failed for good.

    ``code`` is the S3 error code (``"SlowDown"``, ``"AccessDenied"``...) or,
    for connection failures, the exception class name; ``operation`` the S3
    operation (``"UploadPart"``, ``"CompleteMultipartUpload"``...);
    ``attempts`` how many times it was sent.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        code: str | None = None,
        attempts: int = 1,
        http_status: int | None = None,
        request_id: str | None = None,
        upload_id: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, http_status=http_status)
        self.operation = operation
        self.attempts = attempts
        self.upload_id = upload_id
        #: True when the last failure was a transient one (5xx, reset, timeout)
        #: and the attempts ran out; a later resume may well succeed.
        self.transient = transient
        #: Was the multipart upload aborted?  (The error the driver raises
        #: is built with the outcome: :meth:`with_outcome`.)
        self.aborted = False
        #: Can a later run resume from the journal?
        self.resumable = False


    def with_outcome(self, *, aborted: bool, resumable: bool) -> S3TransferError:
        """A copy of this error that says what became of the upload."""
        return _with_outcome(self, aborted, resumable)


def _with_outcome(exc: _E, aborted: bool, resumable: bool) -> _E:
    cls = type(exc)
    clone: _E = cls.__new__(cls, *exc.args)
    clone.args = exc.args
    clone.__dict__.update(exc.__dict__)
    clone.__cause__ = exc.__cause__
    clone.__suppress_context__ = exc.__suppress_context__
    clone.aborted = aborted
    clone.resumable = resumable
    clone.__traceback__ = exc.__traceback__
    return clone


class PartUploadError(S3TransferError):
    """One part could not be uploaded (attempts exhausted, or a
    non-retryable answer such as ``AccessDenied``/``NoSuchUpload``/
    ``InvalidPart``/``BadDigest`` that failed again on its one retry)."""

    def __init__(self, message: str, *, part_number: int, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.part_number = part_number


class CredentialsExpiredError(S3TransferError):
    """S3 rejected the temporary credentials (``ExpiredToken``,
    ``InvalidAccessKeyId``...) and there was no ``refresh`` callable, the
    refresh limit was reached, or the refresh itself failed (``__cause__``)."""

    def __init__(self, message: str, *, refreshes: int = 0, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.refreshes = refreshes


class SourceChangedError(TransferError):
    """The source changed while it was being uploaded: the file's size or
    mtime differs, a read came back short, or a stream did not yield exactly
    the announced number of bytes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="SourceChanged")
        self.aborted = False
        self.resumable = False

    def with_outcome(self, *, aborted: bool, resumable: bool) -> SourceChangedError:
        """A copy of this error that says what became of the upload."""
        return _with_outcome(self, aborted, resumable)
