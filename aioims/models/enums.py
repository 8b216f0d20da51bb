"""Enumerations of the IMS API.

Every enum is *tolerant*: parsing is case-insensitive and an unknown value
becomes a pseudo-member that keeps the raw string (``ImageStatus("paused")``
has ``.value == "paused"`` and is not any declared member), so a list call
never fails because the service added a value.  All enums are ``str``
subclasses: ``ImageStatus.ACTIVE == "active"`` is true.
"""

from __future__ import annotations

import enum
from typing import Any

#: Per enum class: case-folded value -> member (built on first use).
_FOLDED: dict[type, dict[str, Any]] = {}


class TolerantEnum(str, enum.Enum):
    """A ``str`` enum that accepts any casing and keeps unknown values."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        folded = _FOLDED.get(cls)
        if folded is None:
            folded = _FOLDED[cls] = {m.value.casefold(): m for m in cls}
        member = folded.get(value.casefold())
        if member is not None:
            return member
        pseudo = str.__new__(cls, value)
        pseudo._name_ = value.upper()
        pseudo._value_ = value
        return pseudo

    @property
    def known(self) -> bool:
        """True when the value is one of the declared members."""
        return self._name_ in type(self).__members__

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def strict(cls, value: str | TolerantEnum) -> TolerantEnum:
        """Parse *value* and raise ``ValueError`` if it is not a declared member."""
        member = cls(value)
        if not member.known:
            allowed = ", ".join(m.value for m in cls)
            raise ValueError(f"{value!r} is not one of: {allowed}")
        return member


class ImageStatus(TolerantEnum):
    QUEUED = "queued"
    SAVING = "saving"
    ACTIVE = "active"
    KILLED = "killed"
    DELETED = "deleted"


class ImageType(TolerantEnum):
    OS_IMAGE = "os_image"
    DATA_IMAGE = "data_image"
    WHOLE_IMAGE = "whole_image"


class DiskFormat(TolerantEnum):
    RAW = "raw"
    QCOW2 = "qcow2"


class CpuArch(TolerantEnum):
    X86 = "x86"
    ARM = "arm"


class OsType(TolerantEnum):
    LINUX = "linux"
    WINDOWS = "windows"
    OTHER = "other"


class Platform(TolerantEnum):
    WINDOWS = "windows"
    UBUNTU = "ubuntu"
    CENTOS = "CentOS"
    KYLIN = "kylin"
    CCLINUX = "CCLinux"
    OTHER = "other"


class Usage(TolerantEnum):
    ECS = "ecs"
    BMS = "bms"
    CKE = "cke"
    CKS = "cks"
    SEC = "sec"


class Visibility(TolerantEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    SHARED = "shared"
    MARKET = "market"


class BootMode(TolerantEnum):
    BIOS = "BIOS"
    UEFI = "UEFI"


class Instruction(TolerantEnum):
    BITS_32 = "32-bits"
    BITS_64 = "64-bits"


class UploadResult(TolerantEnum):
    SUCCESS = "success"
    FAILED = "failed"
