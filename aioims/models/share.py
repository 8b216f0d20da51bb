"""Share records and export buckets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from .enums import BootMode
from .image import Image


@attrs.define(kw_only=True)
class ImageShare:
    """One share of an image with a user.

    In :meth:`IMSSession.list_image_shares` :attr:`image` is ``None``; in
    :meth:`IMSSession.list_shared_images` it is the full shared image.
    """

    id: int | str | None = None
    share_id: str = ""
    image_id: str = ""
    user_id: str = ""
    user_name: str | None = None
    image: Image | None = None
    boot_mode: BootMode | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class ExportBucket:
    """An object-storage bucket an image can be exported to."""

    name: str
    az_id: str = ""
    cell_id: str = ""
    extra: dict[str, Any] = attrs.field(factory=dict)
