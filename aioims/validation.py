"""Client-side checks of the rules the vendor reference states.

Each function returns the value in its wire form or raises
:class:`~aioims.ValidationError` (naming the field) *before* anything is
sent.  Rules (from the reference):

* ``name``: 1–128 characters; ASCII letters, digits, ``-``, ``.``, ``_``,
  space and Chinese (CJK ideographs); no leading/trailing space;
* ``description``: 2–256 characters;
* ``user_ids``: 1–50 non-empty strings, no duplicates;
* enum fields: a declared member (any casing), given as the enum or a string;
* sizes, ``min_disk``, ``min_ram``: integers >= 0;
* ids in paths: non-empty strings;
* paging: ``current`` >= 1, ``size`` >= 1;
* ``upload_done`` ``result``: ``success`` or ``failed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import ValidationError
from .models import ExportBucket, TolerantEnum, UploadResult, VolumeImage

NAME_MAX = 128
DESCRIPTION_MIN, DESCRIPTION_MAX = 2, 256
USER_IDS_MAX = 50

# CJK: Unified Ideographs + Extension A + Compatibility Ideographs + Ext B-F,
# and the ideographic "〇".
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_NAME_RE = re.compile(rf"[A-Za-z0-9\-._ {_CJK}]+")


def _fail(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", field=field)


def check_str(value: Any, field: str, *, allow_empty: bool = False) -> str:
    """A string (non-empty unless ``allow_empty``)."""
    if not isinstance(value, str):
        raise _fail(field, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise _fail(field, "must not be empty")
    return value


def check_id(value: Any, field: str = "image_id") -> str:
    """A path id: non-empty, no surrounding whitespace."""
    text = check_str(value, field)
    if text != text.strip():
        raise _fail(field, f"has leading/trailing whitespace: {text!r}")
    return text


def check_name(value: Any, field: str = "name") -> str:
    text = check_str(value, field, allow_empty=True)
    if not 1 <= len(text) <= NAME_MAX:
        raise _fail(field, f"must be 1-{NAME_MAX} characters, got {len(text)}")
    if text != text.strip(" "):
        raise _fail(field, "must not start or end with a space")
    if not _NAME_RE.fullmatch(text):
        bad = sorted({ch for ch in text if not _NAME_RE.fullmatch(ch)})
        raise _fail(
            field,
            f"may contain only letters, digits, '-', '.', '_', space and Chinese; "
            f"found {''.join(bad)!r}",
        )
    return text


def check_description(value: Any, field: str = "description") -> str:
    text = check_str(value, field, allow_empty=True)
    if not DESCRIPTION_MIN <= len(text) <= DESCRIPTION_MAX:
        raise _fail(
            field, f"must be {DESCRIPTION_MIN}-{DESCRIPTION_MAX} characters, got {len(text)}"
        )
    return text


def check_user_ids(values: Any, field: str = "user_ids") -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise _fail(field, "must be a list of user id strings")
    ids = list(values)
    if not 1 <= len(ids) <= USER_IDS_MAX:
        raise _fail(field, f"must hold 1-{USER_IDS_MAX} ids, got {len(ids)}")
    seen: set[str] = set()
    for item in ids:
        if not isinstance(item, str) or not item.strip():
            raise _fail(field, f"every id must be a non-empty string, got {item!r}")
        if item in seen:
            raise _fail(field, f"duplicate id {item!r}")
        seen.add(item)
    return ids


def check_enum(cls: type[TolerantEnum], value: Any, field: str) -> str:
    """A declared member of ``cls`` (enum or string, any casing) -> wire value."""
    if isinstance(value, TolerantEnum) and not isinstance(value, cls):
        raise _fail(field, f"expected a {cls.__name__}, got {type(value).__name__}")
    if not isinstance(value, str):
        raise _fail(field, f"must be a {cls.__name__} or a string, got {value!r}")
    try:
        member = cls.strict(value)
    except ValueError as exc:
        raise _fail(field, str(exc)) from None
    return str(member.value)


def check_non_negative(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"must be an integer, got {value!r}")
    if value < 0:
        raise _fail(field, f"must be >= 0, got {value}")
    return value


def check_positive(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"must be an integer, got {value!r}")
    if value < 1:
        raise _fail(field, f"must be >= 1, got {value}")
    return value


def check_page(current: Any, size: Any) -> tuple[int, int]:
    return check_positive(current, "current"), check_positive(size, "size")


def check_upload_result(value: Any) -> str:
    return check_enum(UploadResult, value, "result")


def check_tags(value: Any, field: str = "image_tags") -> list[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise _fail(field, "must be a list")
    return list(value)


def _get(mapping: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in mapping:
            return mapping[name]
    return None


def check_volume_images(value: Any, field: str = "volume_images") -> list[dict[str, Any]]:
    """A list of :class:`VolumeImage` or ``{imageUrl, minDisk}`` mappings -> wire."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise _fail(field, "must be a list")
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if isinstance(item, VolumeImage):
            url, min_disk = item.image_url, item.min_disk
        elif isinstance(item, Mapping):
            url = _get(item, "imageUrl", "image_url")
            min_disk = _get(item, "minDisk", "min_disk")
        else:
            raise _fail(where, "must be a VolumeImage or a mapping")
        entry: dict[str, Any] = {"imageUrl": check_str(url, f"{where}.image_url")}
        if min_disk is not None:
            entry["minDisk"] = check_non_negative(min_disk, f"{where}.min_disk")
        out.append(entry)
    return out


def check_bucket(value: Any, field: str = "bucket") -> dict[str, str]:
    """An :class:`ExportBucket` or ``{name, azId|az_id, cellId|cell_id}`` -> wire."""
    if isinstance(value, ExportBucket):
        name, az_id, cell_id = value.name, value.az_id, value.cell_id
    elif isinstance(value, Mapping):
        name = _get(value, "name")
        az_id = _get(value, "azId", "az_id")
        cell_id = _get(value, "cellId", "cell_id")
    else:
        raise _fail(field, "must be an ExportBucket or a mapping {name, azId, cellId}")
    return {
        "name": check_str(name, f"{field}.name"),
        "azId": check_str(az_id, f"{field}.az_id"),
        "cellId": check_str(cell_id, f"{field}.cell_id"),
    }
