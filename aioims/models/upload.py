"""Upload target returned by ``upload-prepare``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs


@attrs.define(kw_only=True)
class UploadTarget:
    """Where and with which temporary credentials to put an image file.

    ``domain`` is the S3 endpoint URL, ``bucket``/``file`` the bucket and
    object key.  ``secret_key`` and ``token`` never appear in ``repr``/``str``.
    ``expires_at`` is not part of the vendor payload; it is ``None`` unless the
    caller (or a service that tells it) sets it, and the transfer engine then
    refreshes the credentials before they lapse.
    """

    access_key: str
    secret_key: str = attrs.field(repr=False)
    token: str = attrs.field(default="", repr=False)
    bucket: str
    file: str
    domain: str
    image_url: str = ""
    expires_at: datetime | None = None
    extra: dict[str, Any] = attrs.field(factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"UploadTarget(access_key={self.access_key!r}, secret_key='***', "
            f"token={'***' if self.token else ''!r}, bucket={self.bucket!r}, "
            f"file={self.file!r}, domain={self.domain!r}, image_url={self.image_url!r}, "
            f"expires_at={self.expires_at!r})"
        )

    __str__ = __repr__
