"""Endpoint groups of :class:`aioims.IMSSession` (one mixin per group)."""

from .images import ImageEndpoints
from .sharing import SharingEndpoints
from .upload import UploadEndpoints

__all__ = ["ImageEndpoints", "SharingEndpoints", "UploadEndpoints"]
