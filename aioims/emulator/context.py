"""What the handlers and background jobs share: one :class:`Services` per
running emulator."""

from __future__ import annotations

import secrets
import string
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import anyio
import attrs
from aiohttp import web

from .faults import FaultInjector
from .identity import Directory
from .s3front import S3Front
from .storage import Storage
from .store import Store

if TYPE_CHECKING:
    from .worker import Worker

_ALPHABET = string.ascii_lowercase + string.digits


def new_image_id() -> str:
    """``img-`` + 14 lowercase alphanumerics, like the service's ids."""
    return "img-" + "".join(secrets.choice(_ALPHABET) for _ in range(14))


def new_share_id() -> str:
    return "img-share-" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class LockTable:
    """Striped locks: every read-check-write of one image runs under its lock."""

    def __init__(self, stripes: int = 64) -> None:
        self._locks = [anyio.Lock() for _ in range(stripes)]

    def __call__(self, key: str) -> anyio.Lock:
        return self._locks[zlib.crc32(key.encode()) % len(self._locks)]


@attrs.define(kw_only=True)
class Services:
    store: Store
    storage: Storage
    users: Directory
    faults: FaultInjector
    worker: Worker
    front: S3Front | None = None
    #: S3 endpoint handed out by upload-prepare (the front, or the S3 server)
    upload_domain: str = ""
    credential_lifetime: float = 3600.0
    #: active images whose file is missing from the object store
    lost: set[str] = attrs.field(factory=set)
    locks: LockTable = attrs.field(factory=LockTable)
    #: ``POST /_emulator/reset`` calls it (the emulator's reset; seconds it took)
    reset_hook: Callable[[], Awaitable[float]] | None = None
    #: required in ``X-Emulator-Admin-Token`` by the admin API when set
    admin_token: str | None = attrs.field(default=None, repr=False)


SERVICES: web.AppKey[Services] = web.AppKey("ims_services", Services)
