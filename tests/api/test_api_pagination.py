"""Walking pages: iter_* helpers and ``async for`` on a Page."""

from __future__ import annotations

from typing import Any

import ims_vendor_examples as ex
import pytest
from aiohttp import web
from ims_fake import REGION, FakeIMS, Reply

from aioims import F, IMSSession

pytestmark = pytest.mark.timeout(30)


def _image(n: int) -> dict[str, Any]:
    item = ex.load(ex.LIST_IMAGES)["data"]["list"][0]
    item["imageId"] = f"img-{n:014d}"
    item["id"] = n
    return item


def _share(n: int, with_image: bool) -> dict[str, Any]:
    item = ex.load(ex.LIST_SHARED_IMAGES)["data"]["list"][0]
    item["shareId"] = f"img-share-{n}"
    if not with_image:
        item["image"] = None
    return item


def paged(items: list[dict[str, Any]]):
    """A handler serving ``items`` by ``current``/``size`` like the service."""

    async def handler(request: web.Request) -> web.Response:
        current, size = int(request.query["current"]), int(request.query["size"])
        chunk = items[(current - 1) * size : current * size]
        data = {"size": size, "current": current, "total": len(items), "list": chunk}
        return web.json_response(
            {"requestId": f"r-{current}", "code": "Success", "message": "调用成功", "data": data}
        )

    return handler


async def test_iter_images_walks_three_pages(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images", paged([_image(n) for n in range(7)]))
    ids = [image.image_id async for image in ims.iter_images(page_size=3)]
    assert ids == [f"img-{n:014d}" for n in range(7)]
    assert [r.query["current"] for r in fake.requests] == ["1", "2", "3"]
    assert {r.query["size"] for r in fake.requests} == {"3"}


async def test_async_for_on_a_page(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images", paged([_image(n) for n in range(5)]))
    page = await ims.list_images(current=1, size=2)
    assert len(page) == 2 and page.total == 5 and page.has_next_page()
    seen = [image.id async for image in page]
    assert seen == [0, 1, 2, 3, 4]
    assert len(fake.requests) == 3


async def test_page_next_page(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images", paged([_image(n) for n in range(3)]))
    page = await ims.list_images(current=1, size=2)
    second = await page.next_page()
    assert second is not None and second.current == 2 and len(second) == 1
    assert await second.next_page() is None
    assert len(fake.requests) == 2


async def test_empty_page(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images", paged([]))
    assert [i async for i in ims.iter_images(page_size=10)] == []
    page = await ims.list_images()
    assert page.items == [] and page.total == 0 and not page.has_next_page()
    assert [i async for i in page] == []
    assert len(fake.requests) == 2


async def test_empty_list_null(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "GET", "/images",
        {"requestId": "r", "code": "Success", "message": "", "data": {"size": 10, "current": 1,
                                                                      "total": 0, "list": None}},
    )  # fmt: skip
    assert [i async for i in ims.iter_images()] == []


async def test_iteration_stops_on_a_short_page_even_if_total_lies(
    fake: FakeIMS, ims: IMSSession
) -> None:
    def page(items: list[Any]) -> Reply:
        data = {"size": 2, "current": 1, "total": 99, "list": items}
        return Reply({"requestId": "r", "code": "Success", "message": "", "data": data})

    # The server even echoes current=1 every time: iteration still moves on,
    # and stops at the first empty page.
    fake.on("GET", "/images", page([_image(0), _image(1)]), page([]))
    items = [i async for i in ims.iter_images(page_size=2)]
    assert len(items) == 2
    assert len(fake.requests) == 2


async def test_iter_private_images_keeps_the_filter(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/private-images", paged([_image(n) for n in range(5)]))
    flt = F.lk("name", "web")
    images = [i async for i in ims.iter_private_images(filter=flt, page_size=2)]
    assert len(images) == 5
    assert len(fake.requests) == 3
    for req in fake.requests:
        assert req.query["filter"] == "name:lk:web"
        assert req.query["requestInfo"] == REGION


async def test_iter_image_shares(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/private-images/img-x/share", paged([_share(n, False) for n in range(5)]))
    shares = [s.share_id async for s in ims.iter_image_shares("img-x", page_size=2)]
    assert shares == [f"img-share-{n}" for n in range(5)]
    assert [r.query["current"] for r in fake.requests] == ["1", "2", "3"]
    assert all(r.query["requestInfo"] == REGION for r in fake.requests)


async def test_iter_shared_images(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/shared-images", paged([_share(n, True) for n in range(7)]))
    shares = [s async for s in ims.iter_shared_images(order_by="createdAt:desc", page_size=3)]
    assert len(shares) == 7
    assert all(s.image is not None for s in shares)
    assert [r.query["current"] for r in fake.requests] == ["1", "2", "3"]
    assert all(r.query["orderBy"] == "createdAt:desc" for r in fake.requests)
