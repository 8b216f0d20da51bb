"""What to create: :class:`ImageSpec` (the metadata of a new private image)
and :class:`TenantDefaults` (the tenant/department/resource-group ids a
session fills in when a call leaves them out).

::

    spec = ImageSpec(name="web-1", os_type="linux", platform="ubuntu")
    image = await ims.upload_image("web.qcow2", spec)     # disk format/size from the file
    image = await ims.create_private_image(spec)          # metadata only

Every value is checked when the spec is built (a bad one raises
:class:`aioims.ValidationError` naming the field), so nothing is sent for an
invalid spec.  Only ``name`` is required; the other fields default to what
``aioims upload`` uses (:data:`DEFAULTS`).  ``disk_format`` and ``min_disk``
left ``None`` are detected from the file by ``upload_image`` (and are
``qcow2`` / ``1`` GiB for :meth:`~aioims.IMSSession.create_private_image`);
``tenant_id``/``department_id``/``resource_group_id`` left ``None`` come
from the session's :attr:`~aioims.IMSSession.defaults` (``IMS_TENANT_ID``,
``IMS_DEPARTMENT_ID``, ``IMS_RESOURCE_GROUP_ID`` or the profile).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, TypeVar

import attrs

from ..errors import ValidationError
from .enums import (
    BootMode,
    CpuArch,
    DiskFormat,
    ImageType,
    Instruction,
    OsType,
    Platform,
    TolerantEnum,
    Usage,
    Visibility,
)

__all__ = ["DEFAULTS", "CreateKwargs", "ImageSpec", "TenantDefaults", "detect_disk"]

E = TypeVar("E", bound=TolerantEnum)

GiB = 1 << 30
QCOW2_MAGIC = b"QFI\xfb"

#: Disk format and minimum disk (GiB) of a metadata-only create (no file to look at).
DEFAULT_DISK_FORMAT = DiskFormat.QCOW2
DEFAULT_MIN_DISK = 1


def _validation() -> Any:
    from .. import validation  # deferred: aioims.validation imports aioims.models

    return validation


def _enum(cls: type[E], value: Any, field: str) -> E:
    _validation().check_enum(cls, value, field)
    return cls(value)


def _opt_id(value: Any, field: str) -> str | None:
    """An optional id: ``None`` and ``""`` both mean "not given"."""
    if value is None or value == "":
        return None
    return str(_validation().check_id(value, field))


def _count(value: Any, field: str) -> int:
    return int(_validation().check_non_negative(value, field))


# attrs' mypy plugin wants named converter functions: one per field.


def _name(value: Any) -> str:
    return str(_validation().check_name(value))


def _description(value: Any) -> str | None:
    return None if value is None else str(_validation().check_description(value))


def _tags(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(_validation().check_tags(value))


def _os_version(value: Any) -> str | None:
    if value is None:
        return None
    return str(_validation().check_str(value, "os_version", allow_empty=True))


def _tenant_id(value: Any) -> str | None:
    return _opt_id(value, "tenant_id")


def _department_id(value: Any) -> str | None:
    return _opt_id(value, "department_id")


def _resource_group_id(value: Any) -> str | None:
    if value == "":
        return ""  # explicitly none: sent as "" (the vendor's examples do)
    return _opt_id(value, "resource_group_id")


def _min_disk(value: Any) -> int | None:
    return None if value is None else _count(value, "min_disk")


def _min_ram(value: Any) -> int:
    return _count(value, "min_ram")


def _disk_format(value: Any) -> DiskFormat | None:
    return None if value is None else _enum(DiskFormat, value, "disk_format")


def _boot_mode(value: Any) -> BootMode | None:
    return None if value is None else _enum(BootMode, value, "boot_mode")


def _image_type(value: Any) -> ImageType:
    return _enum(ImageType, value, "image_type")


def _instruction(value: Any) -> Instruction:
    return _enum(Instruction, value, "instruction")


def _cpu_arch(value: Any) -> CpuArch:
    return _enum(CpuArch, value, "cpu_arch")


def _os_type(value: Any) -> OsType:
    return _enum(OsType, value, "os_type")


def _platform(value: Any) -> Platform:
    return _enum(Platform, value, "platform")


def _visibility(value: Any) -> Visibility:
    return _enum(Visibility, value, "visibility")


def _usage(value: Any) -> Usage:
    return _enum(Usage, value, "usage")


def _creatable(value: Visibility) -> None:
    if value == Visibility.SHARED:
        raise ValidationError(
            "visibility: 'shared' cannot be set; use public, private or market",
            field="visibility",
        )


# --- tenant defaults ----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TenantDefaults:
    """Ids a session fills in when a call leaves them out (``None`` = none)."""

    tenant_id: str | None = attrs.field(default=None, converter=_tenant_id)
    department_id: str | None = attrs.field(default=None, converter=_department_id)
    resource_group_id: str | None = attrs.field(default=None, converter=_resource_group_id)

    @classmethod
    def coerce(cls, value: TenantDefaults | Mapping[str, Any] | None) -> TenantDefaults:
        """A :class:`TenantDefaults` from itself, a mapping (snake_case or
        camelCase keys) or ``None`` (no defaults)."""
        if value is None:
            return cls()
        if isinstance(value, TenantDefaults):
            return value
        if isinstance(value, Mapping):
            known = {"tenant_id", "department_id", "resource_group_id"}
            data = {_snake(k): v for k, v in value.items()}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ValidationError(f"defaults: unknown key(s) {unknown}", field="defaults")
            return cls(**data)
        raise ValidationError(
            f"defaults must be a TenantDefaults or a mapping, got {value!r}", field="defaults"
        )

    def __bool__(self) -> bool:
        return any((self.tenant_id, self.department_id, self.resource_group_id))


# --- image spec --------------------------------------------------------------------------


class CreateKwargs(TypedDict, total=False):
    """The keyword arguments of the legacy ``upload_image(path, **kwargs)``
    form (the fields of :class:`ImageSpec`)."""

    name: str
    disk_format: DiskFormat | str
    min_disk: int
    min_ram: int
    image_type: ImageType | str
    instruction: Instruction | str
    cpu_arch: CpuArch | str
    os_type: OsType | str
    platform: Platform | str
    visibility: Visibility | str
    usage: Usage | str
    os_version: str
    boot_mode: BootMode | str
    description: str
    image_tags: Sequence[Any]
    tenant_id: str
    department_id: str
    resource_group_id: str | None


@attrs.frozen(kw_only=True)
class ImageSpec:
    """The metadata of a private image to create (see the module docstring).

    Enum fields accept the enum or its string (any casing); every value is
    validated on construction.  ``attrs.evolve(spec, name="other")`` (or
    :meth:`replace`) makes a changed copy.
    """

    name: str = attrs.field(converter=_name)
    disk_format: DiskFormat | None = attrs.field(default=None, converter=_disk_format)
    min_disk: int | None = attrs.field(default=None, converter=_min_disk)
    min_ram: int = attrs.field(default=0, converter=_min_ram)
    image_type: ImageType = attrs.field(default=ImageType.OS_IMAGE, converter=_image_type)
    instruction: Instruction = attrs.field(default=Instruction.BITS_64, converter=_instruction)
    cpu_arch: CpuArch = attrs.field(default=CpuArch.X86, converter=_cpu_arch)
    os_type: OsType = attrs.field(default=OsType.LINUX, converter=_os_type)
    platform: Platform = attrs.field(default=Platform.OTHER, converter=_platform)
    visibility: Visibility = attrs.field(default=Visibility.PRIVATE, converter=_visibility)
    usage: Usage = attrs.field(default=Usage.ECS, converter=_usage)
    os_version: str | None = attrs.field(default=None, converter=_os_version)
    boot_mode: BootMode | None = attrs.field(default=None, converter=_boot_mode)
    description: str | None = attrs.field(default=None, converter=_description)
    image_tags: tuple[Any, ...] | None = attrs.field(default=None, converter=_tags)
    tenant_id: str | None = attrs.field(default=None, converter=_tenant_id)
    department_id: str | None = attrs.field(default=None, converter=_department_id)
    resource_group_id: str | None = attrs.field(default=None, converter=_resource_group_id)

    def __attrs_post_init__(self) -> None:
        _creatable(self.visibility)

    # -- building -------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ImageSpec:
        """A spec from a mapping with snake_case or camelCase keys (a manifest
        entry's metadata, JSON...).  Unknown keys, a key given twice and a
        missing ``name`` raise :class:`~aioims.ValidationError`."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"image spec must be a mapping, got {data!r}", field="spec")
        known = set(FIELDS)
        values: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise ValidationError(f"image spec keys must be strings, got {key!r}")
            name = _snake(key)
            if name == "tags":
                name = "image_tags"
            if name not in known:
                raise ValidationError(
                    f"{key}: unknown image field (known: {', '.join(FIELDS)})", field=key
                )
            if name in values:
                raise ValidationError(f"{key}: given twice", field=name)
            values[name] = value
        if values.get("name") is None:
            raise ValidationError("name: is required", field="name")
        return cls(**values)

    def replace(self, **changes: Any) -> ImageSpec:
        """A copy with ``changes`` applied (validated like the constructor)."""
        return attrs.evolve(self, **changes)

    def with_defaults(self, defaults: TenantDefaults | Mapping[str, Any] | None) -> ImageSpec:
        """Fill ``tenant_id``/``department_id``/``resource_group_id`` left
        ``None`` from ``defaults``."""
        given = TenantDefaults.coerce(defaults)
        return attrs.evolve(
            self,
            tenant_id=self.tenant_id or given.tenant_id,
            department_id=self.department_id or given.department_id,
            resource_group_id=(
                self.resource_group_id
                if self.resource_group_id is not None
                else given.resource_group_id
            ),
        )

    def for_file(self, path: str | os.PathLike[str]) -> ImageSpec:
        """Fill ``disk_format`` and ``min_disk`` left ``None`` from the file
        (see :func:`detect_disk`).  Blocking I/O (reads 32 bytes)."""
        if self.disk_format is not None and self.min_disk is not None:
            return self
        fmt, virtual = detect_disk(path)
        return attrs.evolve(
            self,
            disk_format=self.disk_format or fmt,
            min_disk=self.min_disk if self.min_disk is not None else virtual // GiB + 1,
        )

    # -- output ---------------------------------------------------------------------

    def to_create_kwargs(
        self, defaults: TenantDefaults | Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The keyword arguments of ``create_private_image`` (wire values).

        ``defaults`` fill the ids left ``None``; ``disk_format``/``min_disk``
        left ``None`` become ``qcow2``/``1`` (call :meth:`for_file` first to
        take them from a file).  A missing tenant or department id raises
        :class:`~aioims.ValidationError`.
        """
        spec = self.with_defaults(defaults)
        for field, variable in (("tenant_id", "IMS_TENANT_ID"),
                                ("department_id", "IMS_DEPARTMENT_ID")):  # fmt: skip
            if getattr(spec, field) is None:
                raise ValidationError(
                    f"{field}: is required: give it in the spec or configure a default "
                    f"({variable}, or {field} in the profile of config.toml)",
                    field=field,
                )
        out: dict[str, Any] = {
            "name": spec.name,
            "disk_format": (spec.disk_format or DEFAULT_DISK_FORMAT).value,
            "min_disk": spec.min_disk if spec.min_disk is not None else DEFAULT_MIN_DISK,
            "min_ram": spec.min_ram,
            "image_type": spec.image_type.value,
            "instruction": spec.instruction.value,
            "cpu_arch": spec.cpu_arch.value,
            "os_type": spec.os_type.value,
            "platform": spec.platform.value,
            "visibility": spec.visibility.value,
            "usage": spec.usage.value,
            "tenant_id": spec.tenant_id,
            "department_id": spec.department_id,
        }
        optional = {
            "os_version": spec.os_version,
            "boot_mode": spec.boot_mode.value if spec.boot_mode is not None else None,
            "description": spec.description,
            "image_tags": list(spec.image_tags) if spec.image_tags is not None else None,
            "resource_group_id": spec.resource_group_id,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


#: Field names of :class:`ImageSpec`, in order.
FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(ImageSpec))

#: The defaults of the optional fields (what ``aioims upload`` uses too).
DEFAULTS: dict[str, Any] = {
    a.name: a.default for a in attrs.fields(ImageSpec) if a.default is not attrs.NOTHING
}


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def detect_disk(path: str | os.PathLike[str]) -> tuple[DiskFormat, int]:
    """``(disk format, virtual disk size in bytes)`` from the file's header:
    a qcow2 file is detected by its magic and its virtual size read from the
    header; anything else is ``raw`` of the file's size.  Blocking I/O."""
    size = os.stat(path).st_size
    with open(path, "rb") as fh:
        head = fh.read(32)
    if head[:4] == QCOW2_MAGIC and len(head) >= 32:
        return DiskFormat.QCOW2, max(int.from_bytes(head[24:32], "big"), size)
    return DiskFormat.RAW, size
