"""Sharing, shared images, copy and export endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from .._protocol import RetryMode, quote_segment
from ..config import RetryPolicy
from ..models import ExportBucket, Image, ImageShare, Page
from ..validation import (
    check_bucket,
    check_description,
    check_id,
    check_name,
    check_page,
    check_positive,
    check_str,
    check_user_ids,
)
from ._base import EndpointBase, parse_list, parse_model, parse_page
from .images import fill_tenancy

DEFAULT_PAGE_SIZE = 50


def _private(image_id: str, suffix: str) -> str:
    return f"/private-images/{quote_segment(check_id(image_id))}{suffix}"


def _shared(share_image_id: str, suffix: str = "") -> str:
    return f"/shared-images/{quote_segment(check_id(share_image_id, 'share_image_id'))}{suffix}"


class SharingEndpoints(EndpointBase):
    """Share/unshare, shares and shared images, copy, export."""

    async def share_image(
        self,
        image_id: str,
        *,
        user_ids: Iterable[str],
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Share a private image with 1–50 users.
        ``POST /private-images/{image_id}/share``"""
        await self._change_shares(image_id, "/share", user_ids, timeout, retry)

    async def unshare_image(
        self,
        image_id: str,
        *,
        user_ids: Iterable[str],
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Stop sharing a private image with 1–50 users.
        ``POST /private-images/{image_id}/unshare``"""
        await self._change_shares(image_id, "/unshare", user_ids, timeout, retry)

    async def _change_shares(
        self,
        image_id: str,
        suffix: str,
        user_ids: Iterable[str],
        timeout: float | None,
        retry: RetryPolicy | None,
    ) -> None:
        # Not idempotent-safe: retried only when nothing was sent.
        path = _private(image_id, suffix)
        body = {"shares": {"user_ids": check_user_ids(user_ids)}}
        await self._call(
            "POST", path, json_body=body, request_info=True, mode=RetryMode.UNSENT_ONLY,
            timeout=timeout, retry=retry,
        )  # fmt: skip

    async def list_image_shares(
        self,
        image_id: str,
        *,
        current: int = 1,
        size: int = 10,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Page[ImageShare]:
        """One page of the users an image is shared with (``image`` is None).
        ``GET /private-images/{image_id}/share``"""
        path = _private(image_id, "/share")
        current, size = check_page(current, size)
        envelope = await self._call(
            "GET", path, params={"current": current, "size": size}, request_info=True,
            timeout=timeout, retry=retry,
        )  # fmt: skip

        async def fetch(number: int) -> Page[ImageShare]:
            return await self.list_image_shares(
                image_id, current=number, size=size, timeout=timeout, retry=retry
            )

        return parse_page(envelope, ImageShare, fetch, requested=current)

    async def iter_image_shares(
        self,
        image_id: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[ImageShare]:
        """Every share of an image, page after page."""
        check_positive(page_size, "page_size")
        page = await self.list_image_shares(
            image_id, current=1, size=page_size, timeout=timeout, retry=retry
        )
        async for share in page:
            yield share

    async def list_shared_images(
        self,
        *,
        current: int = 1,
        size: int = 10,
        order_by: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Page[ImageShare]:
        """One page of images shared *with* the caller (each share carries
        its full ``image``). ``GET /shared-images``"""
        current, size = check_page(current, size)
        if order_by is not None:
            check_str(order_by, "order_by")
        envelope = await self._call(
            "GET",
            "/shared-images",
            params={"orderBy": order_by, "current": current, "size": size},
            request_info=True,
            timeout=timeout,
            retry=retry,
        )

        async def fetch(number: int) -> Page[ImageShare]:
            return await self.list_shared_images(
                current=number, size=size, order_by=order_by, timeout=timeout, retry=retry
            )

        return parse_page(envelope, ImageShare, fetch, requested=current)

    async def iter_shared_images(
        self,
        *,
        order_by: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[ImageShare]:
        """Every image shared with the caller, page after page."""
        check_positive(page_size, "page_size")
        page = await self.list_shared_images(
            current=1, size=page_size, order_by=order_by, timeout=timeout, retry=retry
        )
        async for share in page:
            yield share

    async def delete_shared_image(
        self,
        share_image_id: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Remove an image shared with the caller from their list.
        ``DELETE /shared-images/{share_image_id}``"""
        await self._call(
            "DELETE", _shared(share_image_id), request_info=True, timeout=timeout, retry=retry
        )

    async def copy_shared_image(
        self,
        share_image_id: str,
        *,
        name: str,
        tenant_id: str | None = None,
        department_id: str | None = None,
        resource_group_id: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Image:
        """Copy an image shared with the caller into their own tenant.
        ``POST /shared-images/{share_image_id}/copy``. Never retried.
        Ids left out (or ``None``) come from :attr:`~aioims.IMSSession.defaults`;
        without a resource group the service gets ``""`` (none)."""
        path = _shared(share_image_id, "/copy")
        tenant_id, department_id, resource_group_id = fill_tenancy(
            self, tenant_id, department_id, resource_group_id
        )
        body: dict[str, Any] = {
            "tenantId": check_str(tenant_id, "tenant_id"),
            "departmentId": check_str(department_id, "department_id"),
            "resourceGroupId": resource_group_id or "",
            "name": check_name(name),
        }
        if description is not None:
            body["description"] = check_description(description)
        envelope = await self._call(
            "POST", path, json_body=body, mode=RetryMode.NEVER, timeout=timeout, retry=retry
        )
        return parse_model(envelope, Image)

    async def list_export_buckets(
        self,
        image_id: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[ExportBucket]:
        """Buckets an image can be exported to.
        ``GET /private-images/{image_id}/oss-bucket-list``"""
        path = _private(image_id, "/oss-bucket-list")
        envelope = await self._call("GET", path, timeout=timeout, retry=retry)
        return parse_list(envelope, ExportBucket)

    async def export_image(
        self,
        image_id: str,
        *,
        bucket: ExportBucket | Mapping[str, Any],
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Export a custom image to a bucket from :meth:`list_export_buckets`.
        ``POST /custom-images/{image_id}/export``"""
        path = f"/custom-images/{quote_segment(check_id(image_id))}/export"
        body = {"bucket": check_bucket(bucket)}
        await self._call(
            "POST", path, json_body=body, mode=RetryMode.UNSENT_ONLY, timeout=timeout, retry=retry
        )
