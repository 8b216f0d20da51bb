"""``aioims share|unshare|shares`` and ``aioims shared list|delete|copy``."""

from __future__ import annotations

from typing import Any

import click

from .context import delete_each, get_state, global_options, run
from .output import (
    detail_view,
    page_footer,
    page_json,
    record_view,
    share_view,
    wire,
)
from .render import Column


def _paging(func: Any) -> Any:
    func = click.option("--size", type=click.IntRange(min=1), default=10, show_default=True,
                        help="Page size.")(func)
    func = click.option("--page", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Page number (1-based).")(func)
    func = click.option("--all", "walk_all", is_flag=True, help="Walk every page.")(func)
    return func


async def _collect(first: Any, walk_all: bool, size: int) -> dict[str, Any]:
    items = list(first.items)
    if walk_all:
        nxt = await first.next_page()
        while nxt is not None:
            items.extend(nxt.items)
            nxt = await nxt.next_page()
    return page_json(items, first.total, first.current, first.size or size)


def _share_change(image_id: str, user_ids: tuple[str, ...], *, share: bool) -> None:
    state = get_state()

    async def main() -> None:
        async with state.session() as ims:
            if share:
                await ims.share_image(image_id, user_ids=list(user_ids))
            else:
                await ims.unshare_image(image_id, user_ids=list(user_ids))

    run(main)
    verb = "shared" if share else "unshared"
    data = {"imageId": image_id, "userIds": list(user_ids), verb: True}
    columns = (Column("IMAGE ID", "imageId", priority=0),
               Column("USER IDS", "userIds", show=", ".join, priority=0))
    state.output.show(record_view(columns, data, data,
                                  f"{verb} {image_id} with {', '.join(user_ids)}"))


@click.command("share")
@click.argument("image_id")
@click.argument("user_ids", metavar="USER_ID...", nargs=-1, required=True)
@global_options
def share(image_id: str, user_ids: tuple[str, ...]) -> None:
    """Share a private image with 1-50 users (POST .../share).

    JSON: {"imageId": ID, "userIds": [...], "shared": true}.
    """
    _share_change(image_id, user_ids, share=True)


@click.command("unshare")
@click.argument("image_id")
@click.argument("user_ids", metavar="USER_ID...", nargs=-1, required=True)
@global_options
def unshare(image_id: str, user_ids: tuple[str, ...]) -> None:
    """Stop sharing a private image with users (POST .../unshare).

    JSON: {"imageId": ID, "userIds": [...], "unshared": true}.
    """
    _share_change(image_id, user_ids, share=False)


@click.command("shares")
@click.argument("image_id")
@_paging
@global_options
def shares(image_id: str, walk_all: bool, page: int, size: int) -> None:
    """List who an image is shared with (GET .../share).

    JSON: {"items": [share, ...], "total": N, "current": PAGE, "size": SIZE}.
    """
    state = get_state()

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            first = await ims.list_image_shares(image_id, current=page, size=size)
            return await _collect(first, walk_all, size)

    data = run(main)
    footer = page_footer(len(data["items"]), data["total"], data["current"], data["size"],
                         walk_all)
    state.output.show(share_view(data["items"], with_image=False, footer=footer,
                                 document=data))


@click.group("shared")
def shared() -> None:
    """Images other users shared with you: list, delete (decline), copy."""


@shared.command("list")
@_paging
@click.option("--order-by", metavar="FIELD:DIR", default=None,
              help="Sort order, e.g. createdAt:desc.")
@global_options
def shared_list(walk_all: bool, page: int, size: int, order_by: str | None) -> None:
    """List images shared with you (GET /shared-images); each share holds the image.

    JSON: {"items": [share with "image", ...], "total": N, "current": PAGE, "size": SIZE}.
    """
    state = get_state()

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            kwargs: dict[str, Any] = {"current": page, "size": size}
            if order_by:
                kwargs["order_by"] = order_by
            first = await ims.list_shared_images(**kwargs)
            return await _collect(first, walk_all, size)

    data = run(main)
    footer = page_footer(len(data["items"]), data["total"], data["current"], data["size"],
                         walk_all)
    state.output.show(share_view(data["items"], with_image=True, footer=footer,
                                 document=data))


@shared.command("delete")
@click.argument("share_ids", metavar="SHARE_ID...", nargs=-1, required=True)
@global_options
def shared_delete(share_ids: tuple[str, ...]) -> None:
    """Remove images shared with you from your list (DELETE /shared-images/{id}).

    Goes on past a failure and reports each share; exit 1 if any failed.
    JSON: {"deleted": [SHARE_ID, ...], "failed": [{"id", "error"}]}.
    """
    delete_each(share_ids, lambda ims, i: ims.delete_shared_image(i), "share ")


@shared.command("copy")
@click.argument("share_id")
@click.option("--name", required=True, help="Name of the copy (1-128 chars).")
@click.option("--description", help="Description of the copy (2-256 chars).")
@click.option("--wait/--no-wait", "wait", default=False, show_default=True,
              help="Wait until the copy is active.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=3600.0,
              show_default=True, help="Seconds to wait with --wait.")
@global_options
def shared_copy(share_id: str, name: str, description: str | None, wait: bool,
                timeout: float) -> None:
    """Copy an image shared with you into your tenant (POST /shared-images/{id}/copy).

    Uses the configured tenant, department and resource group ids.
    JSON: the new image.
    """
    state = get_state()
    settings = state.require("tenant_id", "department_id")

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            image = await ims.copy_shared_image(
                share_id,
                tenant_id=str(settings.tenant_id),
                department_id=str(settings.department_id),
                resource_group_id=settings.resource_group_id or "",
                name=name,
                description=description,
            )
            if wait:
                image = await ims.wait_for_image(image.image_id, timeout=timeout, interval=1.0)
            result: dict[str, Any] = wire(image)
            return result

    data = run(main)
    state.output.show(detail_view(data))
