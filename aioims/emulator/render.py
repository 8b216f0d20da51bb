"""Records -> the vendor's JSON shapes (via the one converter, ``to_wire``)."""

from __future__ import annotations

from typing import Any

from ..models import format_datetime, to_wire
from .identity import Directory
from .store import ImageRecord, ShareRecord

LOST_MESSAGE = (
    "IMG.OperationFailed.DownloadNotAllowed: the image file was lost "
    "(the emulator's embedded S3 keeps objects only while it runs)"
)

_STRING_FIELDS = (
    "osVersion", "uploadId", "departmentId", "resourceGroupId", "tenantName",
    "departmentName", "resourceGroupName", "position", "sourceType", "capacityPercentage",
    "errMessage", "describe", "checksum",
)  # fmt: skip


def progress_text(value: int | None) -> str:
    """``"100"`` when done, ``"<n>%"`` otherwise (both forms occur in the reference)."""
    if value is None or value <= 0:
        return "0%"
    return "100" if value >= 100 else f"{value}%"


def image_json(record: ImageRecord, users: Directory, *, lost: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = to_wire(record.image)
    data["id"] = record.row_id
    data["shared"] = record.shared
    data["progress"] = progress_text(record.image.progress)
    data["imageTags"] = list(record.image.image_tags or [])
    data["tenantName"] = users.tenant_name(record.tenant_id)
    if data.get("path") is None:
        data.pop("path", None)
    for key in _STRING_FIELDS:
        if data.get(key) is None:
            data[key] = ""
    if lost:
        data["errMessage"] = LOST_MESSAGE
    return data


def share_json(share: ShareRecord, image: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "createdAt": share.created_at,
        "updatedAt": share.updated_at,
        "id": share.row_id,
        "shareId": share.share_id,
        "imageId": share.image_id,
        "userId": share.user_id,
        "image": image,
        "userName": share.user_name,
    }


def page_json(current: int, size: int, total: int, items: list[Any]) -> dict[str, Any]:
    return {"size": size, "current": current, "total": total, "list": items}


__all__ = ["format_datetime", "image_json", "page_json", "progress_text", "share_json"]
