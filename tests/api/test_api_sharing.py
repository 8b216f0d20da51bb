"""Sharing, shared images, copy and export endpoints."""

from __future__ import annotations

from datetime import datetime, timezone

import ims_vendor_examples as ex
import pytest
from ims_fake import REGION, FakeIMS, assert_common_headers

from aioims import (
    ExportBucket,
    Image,
    ImageShare,
    ImageStatus,
    IMSSession,
    Page,
    Platform,
    Visibility,
)

pytestmark = pytest.mark.timeout(30)

USER = "7085524801413873664"


async def test_share_image(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/private-images/img-2fpe4gppddvq8c/share", ex.load(ex.SHARE_RESPONSE))
    assert await ims.share_image("img-2fpe4gppddvq8c", user_ids=[USER]) is None
    (req,) = fake.requests
    assert req.raw_query == f"requestInfo={REGION}"
    assert_common_headers(req)
    assert req.json == ex.load(ex.SHARE_REQUEST)


async def test_unshare_image_uses_the_unshare_url(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/private-images/img-2fpe4gppddvq8c/unshare", ex.load(ex.SHARE_RESPONSE))
    await ims.unshare_image("img-2fpe4gppddvq8c", user_ids=(u for u in [USER, "42"]))
    (req,) = fake.requests
    assert req.path == "/api/image/v1/private-images/img-2fpe4gppddvq8c/unshare"
    assert req.raw_query == f"requestInfo={REGION}"
    assert_common_headers(req)
    assert req.json == {"shares": {"user_ids": [USER, "42"]}}


async def test_list_image_shares(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/private-images/img-2fpe4gppddvq8c/share", ex.load(ex.LIST_IMAGE_SHARES))
    page = await ims.list_image_shares("img-2fpe4gppddvq8c", current=1, size=10)
    (req,) = fake.requests
    assert req.method == "GET"
    assert req.raw_query == f"requestInfo={REGION}&current=1&size=10"
    assert_common_headers(req)
    assert isinstance(page, Page) and page.total == 1
    (share,) = page.items
    assert isinstance(share, ImageShare)
    assert share.share_id == "img-share-mabwezvcbsap5apvpho"
    assert share.user_id == USER
    assert share.user_name == "lptest"
    assert share.image is None
    assert share.id == 1
    assert share.created_at == datetime(2023, 7, 14, 7, 47, 8, 853000, tzinfo=timezone.utc)


async def test_list_shared_images(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/shared-images", ex.load(ex.LIST_SHARED_IMAGES))
    page = await ims.list_shared_images(current=1, size=10, order_by="createdAt:desc")
    (req,) = fake.requests
    # The vendor's example query, in its order.
    assert req.raw_query == f"requestInfo={REGION}&orderBy=createdAt:desc&current=1&size=10"
    assert_common_headers(req)
    (share,) = page.items
    assert share.share_id == "img-share-60syal9krz8c0lnf6n5c"
    assert share.user_name == "lptest"
    image = share.image
    assert isinstance(image, Image)
    assert image.id == 17
    assert image.path == "/var/lib/libvirt/images/test.qcow2"
    assert image.platform is Platform.CCLINUX
    assert image.visibility is Visibility.PRIVATE
    assert image.position == "minio" and image.source_type == "internal"
    assert image.image_tags == []


async def test_list_shared_images_without_order(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/shared-images", ex.load(ex.LIST_SHARED_IMAGES))
    await ims.list_shared_images()
    assert fake.requests[0].raw_query == f"requestInfo={REGION}&current=1&size=10"


async def test_delete_shared_image(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "DELETE", "/shared-images/img-share-60sya19krz8c0lnf6n5c",
        ex.load(ex.DELETE_SHARED_RESPONSE),
    )  # fmt: skip
    assert await ims.delete_shared_image("img-share-60sya19krz8c0lnf6n5c") is None
    (req,) = fake.requests
    assert req.method == "DELETE"
    assert req.raw_query == f"requestInfo={REGION}"
    assert_common_headers(req)


async def test_copy_shared_image(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/shared-images/img-share-ebgqhlf7j4061fjx2bku/copy", ex.load(ex.COPY_RESPONSE))
    image = await ims.copy_shared_image(
        "img-share-ebgqhlf7j4061fjx2bku",
        tenant_id="1845802001481407751",
        department_id="1845802001481407752",
        resource_group_id="1855053812545355776",
        name="名称",
        description="描述",
    )
    (req,) = fake.requests
    assert req.raw_query == ""
    assert_common_headers(req)
    assert req.json == ex.load(ex.COPY_REQUEST)
    assert image.image_id == "img-1w0x82kpybroot"
    assert image.status is ImageStatus.SAVING
    assert image.description == "siri-describe"
    assert image.shared is False
    assert image.volume_images == []
    assert image.image_tags == []


async def test_list_export_buckets(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "GET", "/private-images/img-kvvfk28fcjc0mt/oss-bucket-list",
        ex.load(ex.LIST_EXPORT_BUCKETS),
    )  # fmt: skip
    buckets = await ims.list_export_buckets("img-kvvfk28fcjc0mt")
    (req,) = fake.requests
    assert req.method == "GET"
    assert_common_headers(req)
    assert buckets == [
        ExportBucket(name="hello1", az_id="AZ0", cell_id="ecs49"),
        ExportBucket(name="hello2", az_id="AZ0", cell_id="ecs49"),
    ]


@pytest.mark.parametrize(
    "bucket",
    [
        ExportBucket(
            name="iaas-image-8e10bee109d043b8b97141c5c3c8da93", az_id="AZ0", cell_id="ecs49"
        ),
        {"name": "iaas-image-8e10bee109d043b8b97141c5c3c8da93", "azId": "AZ0", "cellId": "ecs49"},
        {"name": "iaas-image-8e10bee109d043b8b97141c5c3c8da93", "az_id": "AZ0", "cell_id": "ecs49"},
    ],
)
async def test_export_image(fake: FakeIMS, ims: IMSSession, bucket: object) -> None:
    fake.on("POST", "/custom-images/img-wr17xc4linx9po/export", ex.load(ex.EXPORT_RESPONSE))
    assert await ims.export_image("img-wr17xc4linx9po", bucket=bucket) is None  # type: ignore[arg-type]
    (req,) = fake.requests
    assert_common_headers(req)
    assert req.json == ex.load(ex.EXPORT_REQUEST)
