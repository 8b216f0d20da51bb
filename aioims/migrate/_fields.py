"""Field-level checks of the migration manifest (see :mod:`.manifest`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from ..models import BootMode, CpuArch, DiskFormat, ImageType, Instruction, OsType, Platform, Usage
from ..models import Visibility as VisibilityEnum
from ..validation import (
    check_description,
    check_enum,
    check_non_negative,
    check_tags,
    check_volume_images,
)
from .budget import parse_rate, parse_size

SOURCE_KINDS = ("file", "url", "ims", "shared")

ENUMS: dict[str, Any] = {
    "disk_format": DiskFormat, "image_type": ImageType, "instruction": Instruction,
    "cpu_arch": CpuArch, "os_type": OsType, "platform": Platform, "usage": Usage,
    "boot_mode": BootMode, "visibility": VisibilityEnum,
}  # fmt: skip
OPTION_KEYS = {
    "images", "parts", "bandwidth", "part_size", "per_image_parts", "attempts",
    "retry_delay", "wait_timeout", "poll_interval",
}  # fmt: skip
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MD5_RE = re.compile(r"[0-9a-f]{32}")


class ManifestError(ValidationError):
    """The manifest is invalid; ``entry`` names the image entry (its id or
    ``images[i]``) and ``field`` the field at fault."""

    def __init__(self, message: str, *, entry: str | None = None, field: str | None = None):
        where = ": ".join(p for p in (entry, field) if p)
        super().__init__(f"{where}: {message}" if where else message, field=field)
        self.entry = entry

    def __str__(self) -> str:
        return self.message


def snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def keys(raw: Mapping[Any, Any], allowed: set[str], where: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ManifestError(f"keys must be strings, got {key!r}", entry=where)
        name = snake(key)
        if name not in allowed:
            hint = ", ".join(sorted(allowed))
            raise ManifestError(f"unknown field (known: {hint})", entry=where, field=key)
        if name in out:
            raise ManifestError("given twice (camelCase and snake_case?)", entry=where, field=key)
        out[name] = value
    return out


def parse_options(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ManifestError("must be a mapping", field="options")
    options = keys(raw, OPTION_KEYS, "options")
    try:
        if "bandwidth" in options:
            options["bandwidth"] = parse_rate(options["bandwidth"])
        if "part_size" in options:
            options["part_size"] = parse_size(options["part_size"])
    except ValueError as exc:
        raise ManifestError(str(exc), entry="options") from None
    for key in ("images", "parts", "per_image_parts", "attempts"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):  # fmt: skip
            raise ManifestError("must be a positive integer", entry="options", field=key)
    for key in ("retry_delay", "wait_timeout", "poll_interval"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value < 0):  # fmt: skip
            raise ManifestError("must be a number >= 0", entry="options", field=key)
    return options


def check_metadata(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Check metadata values (client-side rules of the SDK); returns them."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            if key in ENUMS:
                check_enum(ENUMS[key], value, key)
            elif key in ("min_disk", "min_ram"):
                check_non_negative(value, key)
            elif key == "description":
                check_description(value)
            elif key == "image_tags":
                check_tags(value)
            elif key == "volume_images":
                check_volume_images(value)
            elif not isinstance(value, str):
                raise ValidationError(f"{key}: must be a string", field=key)
        except ValidationError as exc:
            message = exc.message.split(": ", 1)[-1]
            raise ManifestError(message, entry=where, field=key) from None
        out[key] = value
    return out


def source_of(raw: dict[str, Any], where: str, sources: Mapping[str, Any],
               base: Path) -> tuple[str, Any]:  # fmt: skip
    given = [kind for kind in SOURCE_KINDS if kind in raw]
    if len(given) != 1:
        what = "none" if not given else ", ".join(given)
        raise ManifestError(
            f"give exactly one source (file, url, ims or shared); got {what}", entry=where
        )
    kind = given[0]
    value = raw[kind]
    if kind == "file":
        if not isinstance(value, str) or not value:
            raise ManifestError("must be a file path", entry=where, field="file")
        file = Path(os.path.expanduser(value))
        return kind, str(file if file.is_absolute() else (base / file))
    if kind == "url":
        if not isinstance(value, str) or not re.match(r"https?://[^/\s]+", value):
            raise ManifestError("must be an http(s) URL", entry=where, field="url")
        return kind, value
    if kind == "shared":
        if isinstance(value, Mapping):
            spec = keys(value, {"share_id", "image_id"}, where)
            if len(spec) != 1 or not all(isinstance(v, str) and v for v in spec.values()):
                raise ManifestError("give share_id or image_id", entry=where, field="shared")
            return kind, dict(spec)
        if not isinstance(value, str) or not value:
            raise ManifestError("must be a share id (or {image_id: ...})", entry=where,
                                field="shared")  # fmt: skip
        return kind, {"share_id": value}
    if not isinstance(value, Mapping):
        raise ManifestError("must be {source: ACCOUNT, image_id: ID}", entry=where, field="ims")
    spec = keys(value, {"source", "image_id"}, where)
    account, image_id = spec.get("source"), spec.get("image_id")
    if not isinstance(account, str) or account not in sources:
        known = ", ".join(sources) or "none defined"
        raise ManifestError(f"unknown source account {account!r} (sources: {known})",
                            entry=where, field="ims.source")  # fmt: skip
    if not isinstance(image_id, str) or not image_id:
        raise ManifestError("must be an image id", entry=where, field="ims.image_id")
    return kind, {"source": account, "image_id": image_id}


