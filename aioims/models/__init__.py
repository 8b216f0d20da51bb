"""Typed models of the IMS API and the one cattrs converter."""

from ._converter import converter, format_datetime, from_wire, page_from_wire, to_wire
from .enums import (
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
from .image import Image, VolumeImage
from .page import Page
from .share import ExportBucket, ImageShare
from .spec import ImageSpec, TenantDefaults
from .upload import UploadTarget

__all__ = [
    "BootMode",
    "CpuArch",
    "DiskFormat",
    "ExportBucket",
    "Image",
    "ImageShare",
    "ImageSpec",
    "ImageStatus",
    "ImageType",
    "Instruction",
    "OsType",
    "Page",
    "Platform",
    "TenantDefaults",
    "TolerantEnum",
    "UploadResult",
    "UploadTarget",
    "Usage",
    "Visibility",
    "VolumeImage",
    "converter",
    "format_datetime",
    "from_wire",
    "page_from_wire",
    "to_wire",
]
