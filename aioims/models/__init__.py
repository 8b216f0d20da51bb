"""Typed models of the IMS API and the one cattrs converter."""

from ._converter import converter, from_wire, to_wire
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
from .upload import UploadTarget

__all__ = [
    "BootMode",
    "CpuArch",
    "DiskFormat",
    "ExportBucket",
    "Image",
    "ImageShare",
    "ImageStatus",
    "ImageType",
    "Instruction",
    "OsType",
    "Page",
    "Platform",
    "TolerantEnum",
    "UploadResult",
    "UploadTarget",
    "Usage",
    "Visibility",
    "VolumeImage",
    "converter",
    "from_wire",
    "to_wire",
]
