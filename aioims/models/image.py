"""The image record, the union of every field the reference shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from .enums import (
    BootMode,
    CpuArch,
    DiskFormat,
    ImageStatus,
    ImageType,
    Instruction,
    OsType,
    Platform,
    Usage,
    Visibility,
)


@attrs.define(kw_only=True)
class VolumeImage:
    """A data-disk image attached to a whole-machine import."""

    image_url: str = ""
    min_disk: int | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class Image:
    """An IMS image.

    Wire quirks handled by the converter: ``describe``/``description`` →
    :attr:`description`; ``imageTags``/``tags`` (``null`` or a list) →
    :attr:`image_tags` (never ``None``); ``progress`` as ``"100"``, ``"0%"`` or
    ``0`` → int percentage; ``id`` as int or string; unknown fields are kept
    in :attr:`extra`.
    """

    image_id: str = ""
    id: int | str | None = None
    name: str = ""
    status: ImageStatus | None = None
    image_type: ImageType | None = None
    size: int | None = None
    disk_format: DiskFormat | None = None
    checksum: str | None = None
    owner: str | None = None
    min_disk: int | None = None
    min_ram: int | None = None
    cpu_arch: CpuArch | None = None
    os_type: OsType | None = None
    os_version: str | None = None
    platform: Platform | None = None
    progress: int | None = None
    usage: Usage | None = None
    instructions: Instruction | None = None
    upload_id: str | None = None
    image_tags: list[Any] = attrs.field(factory=list)
    region: str | None = None
    visibility: Visibility | None = None
    boot_mode: BootMode | None = None
    description: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    department_id: str | None = None
    resource_group_id: str | None = None
    tenant_name: str | None = None
    department_name: str | None = None
    resource_group_name: str | None = None
    position: str | None = None
    source_type: str | None = None
    shared: bool | None = None
    capacity_percentage: str | None = None
    err_message: str | None = None
    volume_images: list[VolumeImage] = attrs.field(factory=list)
    path: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
