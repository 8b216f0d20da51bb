"""Helpers every handler uses: the caller, the body, the image it names."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from ..models import ImageStatus
from .context import SERVICES, Services
from .envelope import fault, invalid
from .identity import User, bearer_token
from .render import image_json
from .store import ImageRecord
from .validation import Body, check_image_id, decode_body

GIB = 1024**3


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def region_of(request: web.Request) -> str:
    value = request.headers.get("x-regionid", "").strip()
    if not value:
        raise invalid("x-regionid", "header is required")
    return value


def authenticate(request: web.Request) -> User:
    """The caller: checks the ``x-regionid`` header, then the bearer token."""
    region_of(request)
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise fault(
            "IMG.OperationDenied.AuthFail", "missing 'Authorization: Bearer <token>' header"
        )
    user = services(request).users.by_token(token)
    if user is None:
        raise fault("IMG.OperationDenied.AuthFail", "unknown token")
    return user


async def read_body(request: web.Request) -> Body:
    try:
        raw = await request.read()
    except web.RequestPayloadError as exc:  # e.g. Content-Encoding: gzip on a plain body
        raise invalid("body", f"cannot read the body ({exc})") from None
    return decode_body(raw)


def render(svc: Services, record: ImageRecord) -> dict[str, Any]:
    return image_json(record, svc.users, lost=record.image_id in svc.lost)


async def load_image(
    request: web.Request, user: User, access: Literal["owner", "read"] = "owner"
) -> ImageRecord:
    """The image of the path's ``image_id``: ``IMG.DBGet.NoData`` when it does
    not exist (or was deleted), ``IMG.OperationDenied.Identity`` when the
    caller's tenant may not use it (``read`` also admits public images and
    images shared with the caller)."""
    svc = services(request)
    image_id = check_image_id(request.match_info["image_id"])
    record = await svc.store.get_image(image_id)
    if record is None or record.status == ImageStatus.DELETED.value:
        raise fault("IMG.DBGet.NoData", f"image {image_id} does not exist")
    if record.tenant_id == user.tenant_id:
        return record
    if access == "read":
        if record.image.visibility is not None and record.image.visibility.value == "public":
            return record
        if user.user_id in await svc.store.share_user_ids(image_id):
            return record
    raise fault(
        "IMG.OperationDenied.Identity",
        f"image {image_id} belongs to another tenant",
    )


def require_status(record: ImageRecord, allowed: tuple[str, ...], code: str, action: str) -> None:
    if record.status not in allowed:
        raise fault(
            code,
            f"cannot {action} image {record.image_id} in status {record.status!r} "
            f"(allowed: {', '.join(allowed)})",
        )


def check_min_disk(min_disk: int, size: int | None) -> None:
    """``minDisk`` (GiB) must hold the image file (when its size is known)."""
    if size is not None and min_disk * GIB < size:
        raise fault(
            "IMG.OperationFailed.MinDiskSize",
            f"minDisk {min_disk} GiB is smaller than the image ({size} bytes)",
        )
