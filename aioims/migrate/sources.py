"""What the migration knows about each kind of source, and how it reads it.

* ``file``: a local file (size from ``stat``, MD5 computed while uploading);
* ``url``: imported by the service (``import_image``); a HEAD request first
  tells whether it exists and how large it is;
* ``ims``: an image of another IMS account/region, streamed from its
  ``download_private_image`` into the target's multipart upload (see
  :mod:`aioims.migrate.streaming`); its metadata are the defaults;
* ``shared``: an image shared with the target account, copied by the service
  (``copy_shared_image``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import anyio.to_thread
import attrs

from ..errors import ConnectionFailedError, IMSError, NotFoundError, ServerHTTPError
from ..models import Image, ImageShare, ImageStatus
from .manifest import Entry

if TYPE_CHECKING:
    from ..session import IMSSession
    from ..transfer import OpenAt

__all__ = [
    "SourceError",
    "SourceInfo",
    "find_share",
    "inspect_file",
    "inspect_ims",
    "inspect_shared",
    "inspect_url",
    "md5_of_file",
    "md5_of_url",
    "metadata_from_image",
    "open_ims_at",
]

_CHUNK = 1 << 20
_HEAD_TIMEOUT = 30.0


class SourceError(IMSError):
    """The source cannot be used: missing (``SourceMissing``), refused
    (``SourceDenied``), unusable (``SourceInvalid``).  Not retried."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "SourceMissing",
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status, request_id=request_id)


@attrs.define(kw_only=True)
class SourceInfo:
    """What is known about a source before migrating it."""

    size: int | None = None
    #: MD5 the migrated bytes must have (source image checksum, manifest md5).
    checksum: str | None = None
    #: Metadata defaults taken from the source image (ims, shared).
    metadata: dict[str, Any] = attrs.field(factory=dict)
    name: str | None = None
    share_id: str | None = None
    status: str | None = None


# --- file --------------------------------------------------------------------


def _stat_file(path: Path) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SourceError(f"no such file: {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}", code="SourceDenied") from None
    if not path.is_file():
        raise SourceError(f"not a regular file: {path}", code="SourceInvalid")
    if st.st_size <= 0:
        raise SourceError(f"the file is empty: {path}", code="SourceInvalid")
    if not os.access(path, os.R_OK):
        raise SourceError(f"not readable: {path}", code="SourceDenied")
    return st.st_size


async def inspect_file(entry: Entry) -> SourceInfo:
    size = await anyio.to_thread.run_sync(_stat_file, Path(entry.source))
    return SourceInfo(size=size, checksum=entry.md5)


def _hash_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


async def md5_of_file(path: str | Path) -> str:
    return await anyio.to_thread.run_sync(_hash_file, Path(path))


# --- url ---------------------------------------------------------------------


async def inspect_url(http: aiohttp.ClientSession, entry: Entry) -> SourceInfo:
    """HEAD the URL: 404/410 → ``SourceMissing``, 401/403 → ``SourceDenied``;
    a server that does not answer HEAD (405/501) is given the benefit of
    the doubt; 5xx and connection errors are transient."""
    url = str(entry.source)
    shown = entry.describe_source()
    try:
        async with http.head(
            url, allow_redirects=True, timeout=aiohttp.ClientTimeout(total=_HEAD_TIMEOUT)
        ) as resp:
            status = resp.status
            length = resp.content_length
    except (aiohttp.ClientError, TimeoutError, asyncio.TimeoutError, OSError) as exc:
        raise ConnectionFailedError(f"{shown}: {type(exc).__name__}: {exc}") from exc
    if status in (404, 410):
        raise SourceError(f"{shown}: HTTP {status}", code="SourceMissing", http_status=status)
    if status in (401, 403):
        raise SourceError(f"{shown}: HTTP {status}", code="SourceDenied", http_status=status)
    if status >= 500 or status == 429:
        raise ServerHTTPError(f"{shown}: HTTP {status}", http_status=status)
    if status >= 400 and status not in (405, 501):
        raise SourceError(f"{shown}: HTTP {status}", code="SourceInvalid", http_status=status)
    size = length if status < 300 and length else None
    return SourceInfo(size=size, checksum=entry.md5)


async def md5_of_url(http: aiohttp.ClientSession, url: str) -> tuple[str, int]:
    """MD5 and length of what the URL serves (streamed; hashing off the loop)."""
    digest = hashlib.md5(usedforsecurity=False)
    total = 0
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(sock_read=60.0)) as resp:
            if resp.status >= 400:
                raise SourceError(f"GET {url.split('?', 1)[0]}: HTTP {resp.status}",
                                  http_status=resp.status)  # fmt: skip
            async for chunk in resp.content.iter_chunked(_CHUNK):
                await anyio.to_thread.run_sync(digest.update, chunk)
                total += len(chunk)
    except (aiohttp.ClientError, TimeoutError, asyncio.TimeoutError) as exc:
        raise ConnectionFailedError(f"fetching the URL to verify it: {exc}") from exc
    return digest.hexdigest(), total


# --- ims ---------------------------------------------------------------------


def metadata_from_image(image: Image) -> dict[str, Any]:
    """``create_private_image`` arguments that copy ``image``'s metadata."""
    pairs: dict[str, Any] = {
        "disk_format": image.disk_format, "min_disk": image.min_disk,
        "min_ram": image.min_ram, "image_type": image.image_type,
        "instruction": image.instructions, "cpu_arch": image.cpu_arch,
        "os_type": image.os_type, "os_version": image.os_version,
        "platform": image.platform, "usage": image.usage, "boot_mode": image.boot_mode,
        "description": image.description,
        "image_tags": list(image.image_tags) if image.image_tags else None,
    }  # fmt: skip
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if value is None or value == "":
            continue
        out[key] = value.value if hasattr(value, "value") else value
    if "description" in out and not 2 <= len(out["description"]) <= 256:
        del out["description"]
    return out


async def inspect_ims(source: IMSSession, entry: Entry) -> SourceInfo:
    image_id = entry.source["image_id"]
    try:
        image = await source.get_image(image_id)
    except NotFoundError as exc:
        raise SourceError(
            f"source image {entry.describe_source()} not found", request_id=exc.request_id
        ) from exc
    if image.status != ImageStatus.ACTIVE:
        raise SourceError(
            f"source image {entry.describe_source()} is {image.status}, not active",
            code="SourceInvalid",
        )
    if not image.size:
        raise SourceError(f"source image {entry.describe_source()} has no size",
                          code="SourceInvalid")  # fmt: skip
    checksum = (image.checksum or "").lower() or None
    if entry.md5 and checksum and entry.md5 != checksum:
        raise SourceError(
            f"source image checksum {checksum} differs from the manifest's md5 {entry.md5}",
            code="SourceInvalid",
        )
    return SourceInfo(
        size=image.size, checksum=entry.md5 or checksum, metadata=metadata_from_image(image),
        name=image.name or None, status=str(image.status),
    )  # fmt: skip


def open_ims_at(source: IMSSession, image_id: str, *, timeout: float | None = None) -> OpenAt:
    """``open_at(offset)`` for :func:`~aioims.transfer.upload_stream_resumable`:
    the image file from ``offset``, in 1 MiB chunks, through the one download
    primitive (:meth:`IMSSession.open_image_file`)."""

    @asynccontextmanager
    async def open_at(offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async with source.open_image_file(image_id, offset, timeout=timeout) as file:
            yield file.chunks(_CHUNK)

    return open_at


# --- shared ------------------------------------------------------------------


async def find_share(ims: IMSSession, spec: dict[str, str]) -> ImageShare | None:
    """The share (made to the caller) with ``share_id`` or of ``image_id``."""
    share_id, image_id = spec.get("share_id"), spec.get("image_id")
    async for share in ims.iter_shared_images(page_size=100):
        if share_id and share.share_id == share_id:
            return share
        shared_id = share.image.image_id if share.image is not None else None
        if image_id and image_id in (share.image_id, shared_id):
            return share
    return None


async def inspect_shared(ims: IMSSession, entry: Entry) -> SourceInfo:
    share = await find_share(ims, entry.source)
    if share is None:
        what = entry.source.get("share_id") or entry.source.get("image_id")
        raise SourceError(f"no image shared with this account matches {what}")
    image = share.image
    checksum = None
    if image is not None and image.checksum:
        checksum = image.checksum.lower()
    if entry.md5 and checksum and entry.md5 != checksum:
        raise SourceError(
            f"shared image checksum {checksum} differs from the manifest's md5 {entry.md5}",
            code="SourceInvalid",
        )
    return SourceInfo(
        size=image.size if image is not None else None,
        checksum=entry.md5 or checksum,
        name=image.name if image is not None else None,
        share_id=share.share_id,
        status=str(image.status) if image is not None else None,
    )


# Re-exported for the runner (transient HTTP-ish failures of sources).
TRANSIENT_SOURCE_ERRORS = (ConnectionFailedError, ServerHTTPError)
