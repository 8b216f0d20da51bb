"""Server-side request validation: every rule answers ``IMG.InvalidParameter``
with a message naming the field (pure functions, no I/O)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from ..models.enums import (
    BootMode,
    CpuArch,
    DiskFormat,
    ImageType,
    Instruction,
    OsType,
    Platform,
    TolerantEnum,
    UploadResult,
    Usage,
    Visibility,
)
from .envelope import ImsFault, invalid

MAX_PAGE_SIZE = 1000
MAX_SHARE_USERS = 50
MAX_FILE_SIZE = 5 * 1024**4  # the S3 object limit
MAX_JSON_DEPTH = 32
_INT32 = 2**31 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")

_NAME = re.compile(r"^[A-Za-z0-9\-._ \u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{1,128}$")
_IMAGE_ID = re.compile(r"^img-[0-9a-z]{1,64}$")
_SHARE_ID = re.compile(r"^img-share-[0-9a-z]{1,64}$")

Body = dict[str, Any]


def decode_body(raw: bytes) -> Body:
    """The JSON object of a request body (empty body -> ``{}``)."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid("body", f"malformed JSON ({exc})") from None
    except RecursionError:
        raise invalid("body", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise invalid("body", "must be a JSON object")
    _check_json(data)
    return data


def _check_json(value: Any) -> None:
    """Refuse what could be stored but not answered: nesting deeper than
    :data:`MAX_JSON_DEPTH` and lone surrogates (``"\\ud800"``: not encodable
    as UTF-8, so an image holding one could never be rendered again)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise invalid("body", "holds a lone UTF-16 surrogate (not valid Unicode)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise invalid("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = [*item, *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def check_image_id(value: str, field: str = "image_id") -> str:
    if not _IMAGE_ID.match(value):
        raise invalid(field, f"{value!r} is not an image id (img-<lowercase alphanumerics>)")
    return value


def check_share_id(value: str, field: str = "shareImageId") -> str:
    if not _SHARE_ID.match(value):
        raise invalid(field, f"{value!r} is not a share id (img-share-<lowercase alphanumerics>)")
    return value


# --- field helpers ----------------------------------------------------------


def req_str(body: Mapping[str, Any], field: str, *, allow_empty: bool = False) -> str:
    if field not in body or body[field] is None:
        raise invalid(field, "is required")
    value = body[field]
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if not allow_empty and not value.strip():
        raise invalid(field, "must not be empty")
    return value


def opt_str(body: Mapping[str, Any], field: str, default: str = "") -> str:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value


def req_int(body: Mapping[str, Any], field: str, *, minimum: int = 0, maximum: int = _INT32) -> int:
    if field not in body or body[field] is None:
        raise invalid(field, "is required")
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, "must be an integer")
    if value < minimum:
        raise invalid(field, f"must be >= {minimum}")
    if value > maximum:
        raise invalid(field, f"must be <= {maximum}")
    return value


def enum_value(
    body: Mapping[str, Any],
    field: str,
    cls: type[TolerantEnum],
    *,
    required: bool = True,
    default: str | None = None,
    allowed: tuple[str, ...] | None = None,
) -> str:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise invalid(field, "is required")
        assert default is not None
        return default
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    member = cls(value)
    choices = allowed if allowed is not None else tuple(m.value for m in cls)
    if not member.known or member.value not in choices:
        raise invalid(field, f"{value!r} is not one of: {', '.join(choices)}")
    return str(member.value)


def check_name(value: Any, field: str = "name") -> str:
    if value is None:
        raise invalid(field, "is required")
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if not 1 <= len(value) <= 128:
        raise invalid(field, "must be 1-128 characters long")
    if value != value.strip():
        raise invalid(field, "must not start or end with a space")
    if not _NAME.match(value):
        raise invalid(
            field, "may hold only letters, digits, '-', '.', '_', spaces and Chinese characters"
        )
    return value


def check_description(body: Mapping[str, Any], field: str = "description") -> str:
    value = body.get(field)
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if not 2 <= len(value) <= 256:
        raise invalid(field, "must be 2-256 characters long")
    return value


def check_tags(body: Mapping[str, Any], field: str = "imageTags") -> list[Any]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(field, "must be a list")
    return value


def check_url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(field, "is required")
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 literal)
        raise invalid(field, f"{value!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(field, f"{value!r} is not an http or https URL")
    return value


def _instruction(body: Mapping[str, Any]) -> str:
    key = "instruction" if body.get("instruction") is not None else "instructions"
    if body.get(key) is None:
        raise invalid("instruction", "is required")
    return enum_value(body, key, Instruction)


# --- bodies -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ImageSpec:
    """The validated fields of create / import / update."""

    name: str
    disk_format: str
    min_disk: int
    min_ram: int
    cpu_arch: str
    instructions: str
    os_type: str
    platform: str
    os_version: str = ""
    image_type: str = "os_image"
    visibility: str = "private"
    usage: str = "ecs"
    boot_mode: str = "BIOS"
    description: str = ""
    image_tags: list[Any] = attrs.field(factory=list)
    tenant_id: str = ""
    department_id: str = ""
    resource_group_id: str = ""
    image_url: str = ""
    volume_images: list[dict[str, Any]] = attrs.field(factory=list)


def _common(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": check_name(body.get("name")),
        "disk_format": enum_value(body, "diskFormat", DiskFormat),
        "min_disk": req_int(body, "minDisk", minimum=1),
        "min_ram": req_int(body, "minRam", minimum=0),
        "cpu_arch": enum_value(body, "cpuArch", CpuArch),
        "instructions": _instruction(body),
        "os_type": enum_value(body, "osType", OsType),
        "platform": enum_value(body, "platform", Platform),
    }


def _unwrap(body: Body) -> Body:
    inner = body.get("image")
    if isinstance(inner, dict) and "name" not in body:
        return inner  # the table's nested form
    return body


def validate_create(body: Body) -> ImageSpec:
    body = _unwrap(body)
    fields = _common(body)
    return ImageSpec(
        **fields,
        image_type=enum_value(body, "imageType", ImageType),
        visibility=enum_value(
            body, "visibility", Visibility, allowed=("public", "private", "market")
        ),
        usage=enum_value(body, "usage", Usage),
        department_id=req_str(body, "departmentId"),
        tenant_id=req_str(body, "tenantId"),
        resource_group_id=opt_str(body, "resourceGroupId"),
        boot_mode=enum_value(body, "bootMode", BootMode, required=False, default="BIOS"),
        os_version=opt_str(body, "osVersion"),
        description=check_description(body),
        image_tags=check_tags(body),
    )


def validate_import(body: Body) -> ImageSpec:
    fields = _common(body)
    volumes_raw = body.get("volumeImages", body.get("volumelImages"))
    volumes: list[dict[str, Any]] = []
    if volumes_raw is not None:
        if not isinstance(volumes_raw, list):
            raise invalid("volumeImages", "must be a list")
        for index, item in enumerate(volumes_raw):
            field = f"volumeImages[{index}]"
            if not isinstance(item, dict):
                raise invalid(field, "must be an object")
            url = check_url(item.get("imageUrl"), f"{field}.imageUrl")
            min_disk = item.get("minDisk", 0)
            if isinstance(min_disk, str) and min_disk.isdigit():
                min_disk = int(min_disk)
            if isinstance(min_disk, bool) or not isinstance(min_disk, int) or min_disk < 0:
                raise invalid(f"{field}.minDisk", "must be a non-negative integer")
            volumes.append({"imageUrl": url, "minDisk": min_disk})
    return ImageSpec(
        **fields,
        image_type=enum_value(body, "imageType", ImageType, required=False, default="os_image"),
        visibility=enum_value(body, "visibility", Visibility, allowed=("private",)),
        usage=enum_value(body, "usage", Usage),
        department_id=req_str(body, "departmentId"),
        tenant_id=req_str(body, "tenantId"),
        resource_group_id=opt_str(body, "resourceGroupId"),
        boot_mode=enum_value(body, "bootMode", BootMode, required=False, default="BIOS"),
        os_version=req_str(body, "osVersion", allow_empty=True),
        description=check_description(body),
        image_tags=check_tags(body),
        image_url=check_url(body.get("imageUrl"), "imageUrl"),
        volume_images=volumes,
    )


def validate_update(body: Body) -> ImageSpec:
    fields = _common(body)
    return ImageSpec(
        **fields,
        boot_mode=enum_value(body, "bootMode", BootMode),
        os_version=req_str(body, "osVersion", allow_empty=True),
    )


def validate_prepare(body: Body) -> int:
    return req_int(body, "size", minimum=1, maximum=MAX_FILE_SIZE)


def validate_done(body: Body) -> tuple[str, str]:
    result = enum_value(body, "result", UploadResult)
    return result, opt_str(body, "uploadId")


def validate_share(body: Body) -> list[str]:
    shares = body.get("shares")
    if shares is None:
        raise invalid("shares", "is required")
    if not isinstance(shares, dict):
        raise invalid("shares", "must be an object")
    ids = shares.get("user_ids")
    if ids is None:
        raise invalid("shares.user_ids", "is required")
    if not isinstance(ids, list):
        raise invalid("shares.user_ids", "must be a list of strings")
    if not 1 <= len(ids) <= MAX_SHARE_USERS:
        raise invalid("shares.user_ids", f"must hold 1-{MAX_SHARE_USERS} user ids")
    out: list[str] = []
    for item in ids:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item.strip():
            raise invalid("shares.user_ids", "must be a list of non-empty strings")
        out.append(item)
    return out


@attrs.frozen(kw_only=True)
class CopySpec:
    tenant_id: str
    department_id: str
    resource_group_id: str
    name: str
    description: str


def validate_copy(body: Body) -> CopySpec:
    return CopySpec(
        tenant_id=req_str(body, "tenantId"),
        department_id=req_str(body, "departmentId"),
        resource_group_id=req_str(body, "resourceGroupId", allow_empty=True),
        name=check_name(body.get("name")),
        description=check_description(body),
    )


def validate_export(body: Body) -> tuple[str, str, str]:
    bucket = body.get("bucket")
    if bucket is None:
        raise invalid("bucket", "is required")
    if not isinstance(bucket, dict):
        raise invalid("bucket", "must be an object")
    return (
        _field(bucket, "name", "bucket.name"),
        _field(bucket, "azId", "bucket.azId"),
        _field(bucket, "cellId", "bucket.cellId"),
    )


def _field(body: Mapping[str, Any], key: str, label: str) -> str:
    value = body.get(key)
    if value is None or value == "":
        raise invalid(label, "is required")
    if not isinstance(value, str):
        raise invalid(label, "must be a string")
    return value


# --- query strings --------------------------------------------------------------


def _query_int(query: Mapping[str, str], field: str, maximum: int) -> int:
    raw = query.get(field)
    if raw is None or raw == "":
        raise invalid(field, "is required")
    try:
        value = int(raw)
    except ValueError:
        raise invalid(field, f"{raw!r} is not an integer") from None
    if value < 1:
        raise invalid(field, "must be >= 1")
    if value > maximum:
        raise invalid(field, f"must be <= {maximum}")
    return value


def parse_page(query: Mapping[str, str]) -> tuple[int, int]:
    """``(current, size)``: both required, >= 1, ``size`` <= :data:`MAX_PAGE_SIZE`."""
    return _query_int(query, "current", _INT32), _query_int(query, "size", MAX_PAGE_SIZE)


#: filter field -> record attribute (see store.py for the SQL side).
FILTER_FIELDS = (
    "name", "imageId", "status", "imageType", "diskFormat", "visibility",
    "osType", "platform", "cpuArch", "usage", "osVersion",
)  # fmt: skip
FILTER_OPS = ("lk", "eq")


def parse_filter(raw: str | None) -> list[tuple[str, str, str]]:
    """``name:lk:abc|imageId:eq:img-x|`` -> ``[(field, op, value), ...]``."""
    if not raw:
        return []
    clauses: list[tuple[str, str, str]] = []
    for clause in raw.split("|"):
        if not clause.strip():
            continue
        parts = clause.split(":", 2)
        if len(parts) != 3:
            raise invalid("filter", f"clause {clause!r} is not field:op:value")
        field, op, value = parts
        if field not in FILTER_FIELDS:
            raise invalid("filter", f"unknown field {field!r} (one of {', '.join(FILTER_FIELDS)})")
        if op not in FILTER_OPS:
            raise invalid("filter", f"unknown operator {op!r} (lk or eq)")
        clauses.append((field, op, value))
    return clauses


IMAGE_ORDER_FIELDS = ("createdAt", "updatedAt", "name", "size", "id", "imageId", "status")
SHARE_ORDER_FIELDS = ("createdAt", "updatedAt", "id", "shareId", "imageId", "userId")


def parse_order(raw: str | None, allowed: tuple[str, ...]) -> list[tuple[str, bool]]:
    """``createdAt:desc,name:asc`` -> ``[(field, descending), ...]``."""
    if not raw:
        return []
    out: list[tuple[str, bool]] = []
    for clause in re.split(r"[,|]", raw):
        if not clause.strip():
            continue
        field, _, direction = clause.strip().partition(":")
        if field not in allowed:
            raise invalid("orderBy", f"unknown field {field!r} (one of {', '.join(allowed)})")
        direction = direction.lower() or "asc"
        if direction not in ("asc", "desc"):
            raise invalid("orderBy", f"direction {direction!r} is not asc or desc")
        out.append((field, direction == "desc"))
    return out


__all__ = [
    "CopySpec",
    "ImageSpec",
    "ImsFault",
    "check_image_id",
    "check_share_id",
    "decode_body",
    "parse_filter",
    "parse_order",
    "parse_page",
    "validate_copy",
    "validate_create",
    "validate_done",
    "validate_export",
    "validate_import",
    "validate_prepare",
    "validate_share",
    "validate_update",
]
