"""What a set of upload credentials may do: the S3 front's session policy.

A real service hands out temporary credentials scoped to the one object being
uploaded (an STS session policy on ``bucket/file``).  The emulator's
``upload-prepare`` does the same: its credentials carry an :class:`UploadScope`
and the S3 front (:mod:`aioims.emulator.s3front`) lets them do exactly what an
upload of that object needs, on that bucket and key only:

==========================  ======  ====================================================
operation                   method  request
==========================  ======  ====================================================
``CreateMultipartUpload``   POST    ``/bucket/key?uploads``
``UploadPart``              PUT     ``/bucket/key?partNumber=N&uploadId=U`` (no copy source)
``ListParts``               GET     ``/bucket/key?uploadId=U`` (paging parameters allowed)
``CompleteMultipartUpload`` POST    ``/bucket/key?uploadId=U``
``AbortMultipartUpload``    DELETE  ``/bucket/key?uploadId=U`` (any upload id of the key)
``PutObject``               PUT     ``/bucket/key`` (no copy source)
``HeadObject``              HEAD    ``/bucket/key``
``ListMultipartUploads``    GET     ``/bucket?uploads&prefix=key`` (``prefix`` must equal the key)
==========================  ======  ====================================================

Everything else -- ``GetObject`` (downloads go through the IMS API), listing
buckets or objects, copies (``x-amz-copy-source``), deletes, sub-resources
(``?tagging``, ``?acl``...), another bucket or key, POST uploads -- is answered
403 ``AccessDenied``.  An ``uploadId`` must belong to the key (the front
checks it with the backend: 404 ``NoSuchUpload`` otherwise).  moto's own
endpoints (``/moto-api/...``) are never forwarded, whatever the credentials.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from multidict import MultiMapping

from .s3sigv4 import PRESIGN_PARAMS, S3Error

#: the operations upload credentials may call, with the query parameters each
#: may carry (besides the presign parameters and botocore's ``x-id``)
ALLOWED_OPERATIONS: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {
    # operation: (method, required parameters, optional parameters)
    "CreateMultipartUpload": ("POST", frozenset({"uploads"}), frozenset()),
    "UploadPart": ("PUT", frozenset({"partNumber", "uploadId"}), frozenset()),
    "ListParts": (
        "GET",
        frozenset({"uploadId"}),
        frozenset({"max-parts", "part-number-marker", "encoding-type"}),
    ),
    "CompleteMultipartUpload": ("POST", frozenset({"uploadId"}), frozenset()),
    "AbortMultipartUpload": ("DELETE", frozenset({"uploadId"}), frozenset()),
    "PutObject": ("PUT", frozenset(), frozenset()),
    "HeadObject": ("HEAD", frozenset(), frozenset({"partNumber"})),
    "ListMultipartUploads": (
        "GET",
        frozenset({"uploads", "prefix"}),
        frozenset({"max-uploads", "key-marker", "upload-id-marker", "encoding-type"}),
    ),
}

_COPY_HEADERS = ("x-amz-copy-source", "x-amz-copy-source-range")


@attrs.frozen
class UploadScope:
    """The one object a set of upload credentials may write."""

    bucket: str
    key: str


def denied(message: str) -> S3Error:
    return S3Error(403, "AccessDenied", message)


def is_moto_endpoint(path: str) -> bool:
    """Whether a decoded request path names one of moto's own endpoints."""
    first = path.lstrip("/").split("/", 1)[0].lower()
    return first.startswith("moto-api") or first.startswith("_moto")


def check_scope(
    scope: UploadScope,
    operation: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: MultiMapping[str],
) -> None:
    """Raise 403 ``AccessDenied`` unless the request is one the scope allows.

    ``path`` is the decoded path-style path, ``query`` the decoded query pairs.
    """
    allowed = ALLOWED_OPERATIONS.get(operation)
    if allowed is None:
        raise denied(f"{operation} is not allowed by upload credentials")
    want_method, required, optional = allowed
    if method.upper() != want_method:
        raise denied(f"{method} is not allowed for {operation}")
    names = [name for name, _ in query if name not in PRESIGN_PARAMS]
    values = dict(query)
    if len(names) != len(set(names)):
        raise denied("repeated query parameters")
    extra = set(names) - required - optional - {"x-id"}
    if extra or not required <= set(names):
        raise denied(f"query parameters not allowed for {operation}: {sorted(extra)}")
    if "x-id" in values and values["x-id"] != operation:
        raise denied("x-id does not match the operation")
    if any(name in headers for name in _COPY_HEADERS):
        raise denied("copies are not allowed by upload credentials")
    if operation == "ListMultipartUploads":
        if path.strip("/") != scope.bucket:
            raise denied("upload credentials are limited to their own bucket")
        if values.get("prefix") != scope.key:
            raise denied("ListMultipartUploads is limited to prefix=<the uploaded key>")
        return
    if path != f"/{scope.bucket}/{scope.key}":
        raise denied("upload credentials are limited to their own bucket and key")
