"""The OpenAPI 3.1 document of the emulated API (served at ``GET /openapi.json``).

Every endpoint under ``/api/image/v1`` with its parameters, request body
schema and the vendor envelope it answers, plus the emulator-only admin API
under ``/_emulator/`` (``x-emulator-only: true``).  ``docs/openapi.json`` is
this document; regenerate it with::

    python -m aioims.emulator.openapi > docs/openapi.json

(a test fails when the two drift apart).
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from typing import Any

from .._version import __version__
from ..models.enums import (
    BootMode,
    CpuArch,
    DiskFormat,
    ImageStatus,
    ImageType,
    Instruction,
    OsType,
    Platform,
    TolerantEnum,
    UploadResult,
    Usage,
    Visibility,
)
from .envelope import ERROR_TEXT, SUCCESS_MESSAGE
from .faults import API_PREFIX
from .validation import (
    FILTER_FIELDS,
    IMAGE_ORDER_FIELDS,
    MAX_FILE_SIZE,
    MAX_PAGE_SIZE,
    MAX_SHARE_USERS,
    SHARE_ORDER_FIELDS,
)

Schema = dict[str, Any]

INT32 = 2**31 - 1

#: Every code of the vendor's error table (the emulator answers a subset;
#: fault rules may inject any of them).
ERROR_CODES: tuple[str, ...] = (*ERROR_TEXT, *(f"IMG.{code}" for code in (
    "OperationFailed.DownloadNotallowed", "OperationFailed.UploadNotPermission",
    "OperationFailed.UserInfo", "OperationDenied.Quota", "OperationDenied.QuotaNotEnough",
    "OperationDenied.QuotaDeduct", "OperationFailed.Transfer", "OperationFailed.ResourceCenter",
    "OperationFailed.ResourceInfo", "OperationFailed.ResourceStatus",
)))  # fmt: skip

DESCRIPTION = """\
The CECSTACK Image Management Service (IMS) API v1 as emulated by `aioims.emulator`.

* Every request under `/api/image/v1` needs the vendor's `x-regionid` header and,
  **by the emulator's own convention (not the vendor's, whose signing scheme is
  documented elsewhere)**, `Authorization: Bearer <token>` naming an emulator user.
  `requestInfo` is accepted everywhere and ignored.
* Every answer is the vendor envelope `{requestId, code, message, data}` (the request
  id is also in `x-request-id`). Success is HTTP 200 with `code` `Success`; errors
  are HTTP 400 with an `IMG.*` code, except: an unknown path under `/api/image/v1`
  is HTTP 404 and a method the path does not take HTTP 405 (with `Allow`), both with
  `IMG.InvalidParameter`; a body over 4 MiB is HTTP 413 and an unsatisfiable `Range`
  of a download HTTP 416 (with `Content-Range`), both with `IMG.InvalidParameter`.
* Enumerations in request bodies are matched case-insensitively; `null` or `""` for
  an optional field means "not given". Unknown body fields are ignored.
* Fault rules (`/_emulator/faults`) can make any endpoint answer any `IMG.*` code,
  a raw 5xx or nothing at all: such answers are not listed per operation.
* Paths under `/_emulator/` (and this document, `/openapi.json`) are emulator-only
  (`x-emulator-only: true`), plain JSON, without authentication.
"""


# --- schema helpers -----------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _bounded(kind: str, low: str, high: str, lo: int | None, hi: int | None) -> Schema:
    out: Schema = {"type": kind}
    if lo is not None:
        out[low] = lo
    if hi is not None:
        out[high] = hi
    return out


def string(min_length: int | None = None, max_length: int | None = None, **extra: Any) -> Schema:
    return {**_bounded("string", "minLength", "maxLength", min_length, max_length), **extra}


def integer(minimum: int | None = None, maximum: int | None = None, **extra: Any) -> Schema:
    return {**_bounded("integer", "minimum", "maximum", minimum, maximum), **extra}


def enum(cls: type[TolerantEnum], *only: str) -> Schema:
    values = list(only) if only else [m.value for m in cls]
    return {"type": "string", "enum": values}


def obj(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return {**out, **extra}


def nullable(schema: Schema) -> Schema:
    return {"oneOf": [{"type": "null"}, schema]}


def page(item: Schema) -> Schema:
    return obj(
        {
            "size": integer(1, MAX_PAGE_SIZE),
            "current": integer(1),
            "total": integer(0, description="the number of items (not pages)"),
            "list": {"type": "array", "items": item},
        },
        ("size", "current", "total", "list"),
    )


def success(data: Schema) -> Schema:
    message = {"type": "string", "examples": [SUCCESS_MESSAGE]}
    fields = {"requestId": string(1), "code": {"const": "Success"}, "message": message}
    return obj({**fields, "data": data}, ("requestId", "code", "message", "data"))


# --- components ---------------------------------------------------------------------

NAME = string(
    1, 128,
    pattern=r"^[A-Za-z0-9\-._ \u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+$",
    description="letters, digits, '-', '.', '_', spaces and Chinese; no leading or trailing space",
)  # fmt: skip
DESCRIPTION_FIELD: Schema = {
    "type": ["string", "null"],
    "anyOf": [{"maxLength": 0}, {"minLength": 2, "maxLength": 256}],
    "description": "2-256 characters (null or empty: none)",
}
IMAGE_ID = string(pattern=r"^img-[0-9a-z]{1,64}$", examples=["img-kvvfk28fcjc0mt"])
SHARE_ID = string(pattern=r"^img-share-[0-9a-z]{1,64}$")
TEXT = string()
ID_TEXT = string(1, description="must not be empty or blank")
TAGS: Schema = {"type": ["array", "null"], "items": {}}
INSTRUCTION = {
    **enum(Instruction),
    "description": "responses call it `instructions` (also accepted here)",
}

IMAGE_FIELDS: Schema = {
    "name": NAME,
    "diskFormat": enum(DiskFormat),
    "minDisk": integer(1, INT32, description="GiB"),
    "minRam": integer(0, INT32, description="MiB"),
    "cpuArch": enum(CpuArch),
    "instruction": INSTRUCTION,
    "osType": enum(OsType),
    "platform": enum(Platform),
}
COMMON_REQUIRED = tuple(IMAGE_FIELDS)
BUCKET_FIELDS = ("name", "azId", "cellId")

VOLUME_IMAGE = obj(
    {"imageUrl": string(1, format="uri"), "minDisk": integer(0, description="GiB")},
    ("imageUrl",),
)

_IMAGE_REQUIRED = ["id", "imageId", "name", "status", "imageType", "size", "diskFormat",
    "checksum", "owner", "minDisk", "minRam", "cpuArch", "osType", "platform", "progress",
    "usage", "instructions", "imageTags", "region", "visibility", "bootMode", "describe",
    "createdAt", "updatedAt", "shared", "errMessage"]  # fmt: skip
_IMAGE_TEXT = ["name", "osVersion", "uploadId", "describe", "departmentId", "resourceGroupId",
    "tenantName", "departmentName", "resourceGroupName", "position", "capacityPercentage",
    "errMessage"]  # fmt: skip
_IMAGE_ENUMS: tuple[tuple[str, type[TolerantEnum]], ...] = (
    ("status", ImageStatus), ("imageType", ImageType), ("diskFormat", DiskFormat),
    ("cpuArch", CpuArch), ("osType", OsType), ("platform", Platform), ("usage", Usage),
    ("instructions", Instruction), ("visibility", Visibility), ("bootMode", BootMode),
)  # fmt: skip


def _image() -> Schema:
    props: Schema = {key: TEXT for key in _IMAGE_TEXT}
    props.update({key: enum(cls) for key, cls in _IMAGE_ENUMS})
    props.update({
        "id": integer(1, description="row id"),
        "imageId": IMAGE_ID,
        "size": {"type": ["integer", "null"], "minimum": 0, "description": "bytes"},
        "checksum": string(description="MD5 (hex) of the file; empty until known"),
        "owner": string(description="tenant id of the owner"),
        "minDisk": integer(0), "minRam": integer(0),
        "progress": string(pattern=r"^(100|[0-9]{1,2}%)$", examples=["0%", "100"]),
        "imageTags": {"type": "array", "items": {}},
        "region": string(description="x-regionid of the creating request"),
        "createdAt": DATE_TIME, "updatedAt": DATE_TIME,
        "sourceType": string(enum=["upload", "import", "copy"]),
        "shared": {"type": "boolean"},
        "volumeImages": {"type": "array", "items": VOLUME_IMAGE},
    })  # fmt: skip
    return obj(props, tuple(_IMAGE_REQUIRED))


DATE_TIME = string(format="date-time")
TENANT_ID = {**ID_TEXT, "description": "must be the caller's tenant"}
USER_IDS = {"type": "array", "minItems": 1, "maxItems": MAX_SHARE_USERS, "uniqueItems": True,
            "items": {"type": ["string", "integer"], "minLength": 1}}  # fmt: skip
ADMIN_USER = ["token", "userName", "userId", "tenantId", "departmentId", "tenantName",
              "departmentName"]  # fmt: skip
SHARE_FIELDS = ("id", "shareId", "imageId", "userId", "userName", "image", "createdAt",
                "updatedAt")  # fmt: skip
TARGET_FIELDS = ("accessKey", "secretKey", "token", "bucket", "file", "domain", "image_url")
ENVELOPE_FIELDS = ("requestId", "code", "message", "data")
OPTIONAL_CREATE: Schema = {
    "resourceGroupId": TEXT, "bootMode": {**enum(BootMode), "default": "BIOS"},
    "description": DESCRIPTION_FIELD, "imageTags": TAGS,
}  # fmt: skip

SCHEMAS: dict[str, Schema] = {
    "Image": _image(),
    "ImagePage": page(ref("Image")),
    "ImageShare": obj({
        "id": integer(1), "shareId": SHARE_ID, "imageId": IMAGE_ID, "userId": TEXT,
        "userName": TEXT, "image": nullable(ref("Image")), "createdAt": DATE_TIME,
        "updatedAt": DATE_TIME,
    }, SHARE_FIELDS),
    "ImageSharePage": page(ref("ImageShare")),
    "UploadTarget": obj({
        **{key: TEXT for key in TARGET_FIELDS},
        "token": string(description="session token (may be empty)"),
        "file": string(description="object key"),
        "domain": string(format="uri", description="S3 endpoint (path-style addressing)"),
    }, TARGET_FIELDS),
    "ExportBucket": obj({"azId": TEXT, "cellId": TEXT, "name": TEXT}, ("azId", "cellId", "name")),
    "ErrorEnvelope": obj({
        "requestId": string(1),
        "code": {"type": "string", "enum": list(ERROR_CODES)},
        "message": string(description="the vendor's text, then the field or rule at fault"),
        "data": {"type": "null"},
    }, ENVELOPE_FIELDS),
    "CreateImageFields": obj({
        **IMAGE_FIELDS, **OPTIONAL_CREATE,
        "imageType": enum(ImageType),
        "visibility": enum(Visibility, "public", "private", "market"),
        "usage": enum(Usage), "departmentId": ID_TEXT, "tenantId": TENANT_ID, "osVersion": TEXT,
    }, (*COMMON_REQUIRED, "imageType", "visibility", "usage", "departmentId", "tenantId")),
    "CreateImageRequest": {
        "anyOf": [ref("CreateImageFields"), obj({"image": ref("CreateImageFields")}, ("image",))],
        "description": "flat (as in the vendor's example) or nested under `image` (the table)",
    },
    "UpdateImageRequest": obj({
        **IMAGE_FIELDS,
        "diskFormat": {**enum(DiskFormat), "description": "must equal the current one"},
        "minDisk": integer(1, INT32, description="GiB; may not shrink"),
        "bootMode": enum(BootMode), "osVersion": TEXT,
    }, (*COMMON_REQUIRED, "bootMode", "osVersion")),
    "ImportImageRequest": obj({
        **IMAGE_FIELDS, **OPTIONAL_CREATE,
        "imageUrl": string(1, format="uri", pattern="^[Hh][Tt][Tt][Pp][Ss]?://"),
        "visibility": enum(Visibility, "private"),
        "usage": enum(Usage), "osVersion": TEXT, "departmentId": ID_TEXT, "tenantId": TENANT_ID,
        "imageType": {**enum(ImageType), "default": "os_image"},
        "volumeImages": {"type": ["array", "null"], "items": VOLUME_IMAGE},
        "imageSource": {"description": "accepted and ignored"},
        "region": {"description": "accepted and ignored"},
    }, (*COMMON_REQUIRED, "imageUrl", "visibility", "usage", "osVersion", "departmentId",
        "tenantId")),
    "UploadPrepareRequest": obj(
        {"size": integer(1, MAX_FILE_SIZE, description="file size in bytes")}, ("size",)),
    "UploadDoneRequest": obj(
        {"result": enum(UploadResult), "uploadId": string(description="multipart upload id")},
        ("result",)),
    "ShareRequest": obj({"shares": obj({"user_ids": USER_IDS}, ("user_ids",))}, ("shares",)),
    "ExportRequest": obj(
        {"bucket": obj({k: ID_TEXT for k in BUCKET_FIELDS}, BUCKET_FIELDS)}, ("bucket",)),
    "CopyRequest": obj({
        "tenantId": TENANT_ID, "departmentId": ID_TEXT,
        "resourceGroupId": string(description="may be empty"),
        "name": NAME, "description": DESCRIPTION_FIELD,
    }, ("tenantId", "departmentId", "resourceGroupId", "name")),
    # --- emulator-only (admin API) ---
    "AdminError": obj({"error": TEXT}, ("error",)),
    "AdminUser": obj({key: TEXT for key in ADMIN_USER}, tuple(ADMIN_USER[:5]),
                     description="snake_case keys (user_name, ...) are accepted too"),
    "FaultConfig": obj({
        "rules": {"type": "array", "items": {"type": "object"}},
        "seed": {"type": ["integer", "null"]},
        "activate_delay": {"type": "number", "minimum": 0, "maximum": 3600},
        "kill_image_ids": {"type": "array", "items": IMAGE_ID, "maxItems": 1000},
        "kill_next_uploads": integer(0, 1_000_000),
        "replace": {"type": "boolean"},
    }, additionalProperties=False,
        description="see docs/emulator.md (rule fields: endpoint = an operationId, path, "
        "method, latency, error, drop, when, times, rate)"),
    "S3FaultConfig": obj({
        "rules": {"type": "array", "items": {"type": "object"}},
        "credential_lifetime": {"type": "number", "exclusiveMinimum": 0,
                                "maximum": 365 * 24 * 3600},
        "replace": {"type": "boolean"},
    }, additionalProperties=False),
}  # fmt: skip


def _param(name: str, where: str, schema: Schema, description: str, required: bool) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": schema,
    }


PARAMETERS: dict[str, Schema] = {
    "Region": _param("x-regionid", "header", string(1), "the region (e.g. region0)", True),
    "RequestInfo": _param(
        "requestInfo", "query", TEXT, "the region again (accepted and ignored)", False
    ),
    "ImageId": _param("image_id", "path", IMAGE_ID, "the image id", True),
    "ShareId": _param("share_id", "path", SHARE_ID, "the share id (shareId)", True),
    "Current": _param("current", "query", integer(1, INT32), "page number (1-based)", True),
    "Size": _param("size", "query", integer(1, MAX_PAGE_SIZE), "page size", True),
    "Filter": _param(
        "filter", "query", TEXT,
        "clauses `field:op:value` joined by `|` (op `lk` = contains, `eq` = equals); "
        f"fields: {', '.join(FILTER_FIELDS)}", False,
    ),
    "ImageOrder": _param(
        "orderBy", "query", TEXT,
        f"`field:asc|desc`, several separated by `,`; fields: {', '.join(IMAGE_ORDER_FIELDS)}",
        False,
    ),
    "ShareOrder": _param(
        "orderBy", "query", TEXT,
        f"`field:asc|desc`, several separated by `,`; fields: {', '.join(SHARE_ORDER_FIELDS)}",
        False,
    ),
    "Range": _param("Range", "header", TEXT, "one `bytes=a-b`, `a-` or `-n` range", False),
}  # fmt: skip

ERROR = {"$ref": "#/components/responses/Error"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RESPONSES: dict[str, Schema] = {
    "Error": _json(ref("ErrorEnvelope"), "an IMG.* error (HTTP 400)"),
    "TooLarge": _json(ref("ErrorEnvelope"), "body over 4 MiB (IMG.InvalidParameter)"),
    "AdminError": _json(ref("AdminError"), "a bad configuration (nothing changed)"),
}

# --- operations ---------------------------------------------------------------------

#: (method, path under /api/image/v1, operationId (= the SDK coroutine and the
#: fault rules' endpoint name), tag, summary, parameters, request body, data)
Operation = tuple[str, str, str, str, str, tuple[str, ...], str | None, Schema]

PAGE = ("Current", "Size")
OPERATIONS: tuple[Operation, ...] = (
    ("get", "/images", "list_images", "images",
     "List public images and the caller's tenant's own", (*PAGE, "Filter", "ImageOrder"), None,
     ref("ImagePage")),
    ("get", "/images/{image_id}", "get_image", "images", "Get an image", ("ImageId",), None,
     ref("Image")),
    ("get", "/private-images", "list_private_images", "images",
     "List the caller's tenant's images", (*PAGE, "Filter", "ImageOrder"), None,
     ref("ImagePage")),
    ("post", "/private-images", "create_private_image", "images",
     "Create a private image (queued)", (), "CreateImageRequest", ref("Image")),
    ("post", "/private-images/import", "import_image", "images",
     "Import an image from a URL (saving)", (), "ImportImageRequest", ref("Image")),
    ("put", "/private-images/{image_id}", "update_private_image", "images",
     "Update an image's metadata", ("ImageId",), "UpdateImageRequest", {"type": "null"}),
    ("delete", "/private-images/{image_id}", "delete_private_image", "images",
     "Delete an image", ("ImageId",), None, {"type": "null"}),
    ("post", "/private-images/{image_id}/upload-prepare", "upload_prepare", "upload",
     "Get temporary S3 credentials for the image file", ("ImageId",), "UploadPrepareRequest",
     ref("UploadTarget")),
    ("post", "/private-images/{image_id}/upload-done", "upload_done", "upload",
     "Report the end of the upload", ("ImageId",), "UploadDoneRequest", {"type": "null"}),
    ("get", "/private-images/{image_id}/file", "download_private_image", "upload",
     "Download the image file (active images only)", ("ImageId", "Range"), None, {}),
    ("head", "/private-images/{image_id}/file", "download_private_image_head", "upload",
     "Headers of the image file download", ("ImageId", "Range"), None, {}),
    ("post", "/private-images/{image_id}/share", "share_image", "sharing",
     "Share an active private image with users", ("ImageId",), "ShareRequest",
     {"type": "null"}),
    ("get", "/private-images/{image_id}/share", "list_image_shares", "sharing",
     "List the shares of an image", ("ImageId", *PAGE, "ShareOrder"), None,
     ref("ImageSharePage")),
    ("post", "/private-images/{image_id}/unshare", "unshare_image", "sharing",
     "Stop sharing an image with users", ("ImageId",), "ShareRequest", {"type": "null"}),
    ("get", "/private-images/{image_id}/oss-bucket-list", "list_export_buckets", "export",
     "List the buckets an image can be exported to", ("ImageId",), None,
     {"type": "array", "items": ref("ExportBucket")}),
    ("post", "/custom-images/{image_id}/export", "export_image", "export",
     "Export an active image to a bucket", ("ImageId",), "ExportRequest", {"type": "null"}),
    ("get", "/shared-images", "list_shared_images", "sharing",
     "List the images shared with the caller", (*PAGE, "ShareOrder"), None,
     ref("ImageSharePage")),
    ("delete", "/shared-images/{share_id}", "delete_shared_image", "sharing",
     "Remove a share (recipient or owner)", ("ShareId",), None, {"type": "null"}),
    ("post", "/shared-images/{share_id}/copy", "copy_shared_image", "sharing",
     "Copy an image shared with the caller into its tenant (saving)", ("ShareId",),
     "CopyRequest", ref("Image")),
)  # fmt: skip

_FILE_HEADERS = {
    name: {"description": text, "schema": TEXT}
    for name, text in (
        ("ETag", '"<md5 hex>"'),
        ("x-checksum-md5", "MD5 (hex) of the whole file"),
        ("Content-MD5", "base64 MD5 of the whole file (200 only)"),
        ("Accept-Ranges", "bytes"),
        ("Content-Range", "bytes a-b/size (206 only)"),
    )
}


def _file_responses() -> Schema:
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "200": {"description": "the whole file", "headers": _FILE_HEADERS, "content": binary},
        "206": {"description": "the requested range", "headers": _FILE_HEADERS, "content": binary},
        "400": ERROR,
        "416": {
            **_json(ref("ErrorEnvelope"), "unsatisfiable range (IMG.InvalidParameter)"),
            "headers": {"Content-Range": {"description": "bytes */size", "schema": TEXT}},
        },
    }


def _operation(op: Operation) -> Schema:
    _, _, op_id, tag, summary, params, body, data = op
    refs = [*params, "Region", "RequestInfo"]
    out: Schema = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "parameters": [{"$ref": f"#/components/parameters/{name}"} for name in refs],
    }
    if body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    if op_id.startswith("download_private_image"):
        out["responses"] = _file_responses()
    else:
        out["responses"] = {"200": _json(success(data), "Success"), "400": ERROR}
        if body is not None:
            out["responses"]["413"] = {"$ref": "#/components/responses/TooLarge"}
    return out


def _admin(summary: str, response: Schema, body: str | None = None) -> Schema:
    out: Schema = {
        "tags": ["emulator-admin"],
        "summary": summary,
        "security": [],
        "x-emulator-only": True,
        "responses": {"200": _json(response, "OK")},
    }
    if body is not None:
        out["requestBody"] = {"content": {"application/json": {"schema": ref(body)}}}
        out["responses"]["400"] = {"$ref": "#/components/responses/AdminError"}
    return out


def _admin_paths() -> dict[str, Schema]:
    state: Schema = {"type": "object", "description": "faults as in GET /_emulator/faults"}
    users = {"type": "array", "items": ref("AdminUser")}
    return {
        "/_emulator/state": {
            "get": _admin("Users, image counts and summaries, lost files, jobs, faults", state)
        },
        "/_emulator/faults": {
            "get": _admin("The IMS-side fault configuration", {"type": "object"}),
            "post": _admin("Add fault rules / change settings", {"type": "object"}, "FaultConfig"),
            "delete": _admin("Remove every fault rule and setting", {"type": "object"}),
        },
        "/_emulator/s3-faults": {
            "get": _admin("The S3 front's rules and the credential lifetime", {"type": "object"}),
            "post": _admin("S3 front rules and credential lifetime", {"type": "object"},
                           "S3FaultConfig"),
            "delete": _admin("Remove the S3 front's rules", {"type": "object"}),
        },
        "/_emulator/users": {
            "get": _admin("List the users", users),
            "post": _admin("Add a user (409 if its token or user id is bound to another)",
                           ref("AdminUser"), "AdminUser"),
        },
        "/_emulator/reset": {
            "post": _admin("Back to a clean account (images, shares, users, faults, S3)",
                           {"type": "object"}),
        },
        "/openapi.json": {"get": _admin("This document", {"type": "object"})},
    }  # fmt: skip


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict each call)."""
    paths: dict[str, Schema] = {}
    for op in OPERATIONS:
        paths.setdefault(API_PREFIX + op[1], {})[op[0]] = _operation(op)
    paths.update(_admin_paths())
    paths = copy.deepcopy(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CECSTACK IMS API v1 (aioims emulator)",
            "version": __version__,
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/", "description": "the emulator serving this document"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            *({"name": name} for name in ("images", "upload", "sharing", "export")),
            {"name": "emulator-admin", "description": "emulator-only; no authentication "
             "unless the emulator runs with --admin-token (X-Emulator-Admin-Token)"},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the emulator's own convention (token-alice, token-bob, "
                    "token-carol, or a user added with POST /_emulator/users); the vendor's "
                    "request signing is not emulated",
                }
            },
            "parameters": copy.deepcopy(PARAMETERS),
            "schemas": copy.deepcopy(SCHEMAS),
            "responses": copy.deepcopy(RESPONSES),
        },
    }


@functools.lru_cache(maxsize=1)
def openapi_text() -> str:
    """The document as the JSON text of ``docs/openapi.json``."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(openapi_text().encode("utf-8"))
