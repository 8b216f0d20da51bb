"""Image endpoints against a local server replaying the vendor's examples."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import ims_vendor_examples as ex
import pytest
from ims_fake import REGION, FakeIMS, Reply, assert_common_headers

from aioims import (
    BootMode,
    CpuArch,
    DiskFormat,
    F,
    Filter,
    Image,
    ImageKilledError,
    ImageStatus,
    ImageType,
    IMSSession,
    Instruction,
    OsType,
    Page,
    Platform,
    UploadFailedError,
    Usage,
    ValidationError,
    Visibility,
    VolumeImage,
    WaitTimeoutError,
)

pytestmark = pytest.mark.timeout(30)


async def test_list_images(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images", ex.load(ex.LIST_IMAGES))
    page = await ims.list_images(current=1, size=1)
    (req,) = fake.requests
    assert req.method == "GET" and req.path == "/api/image/v1/images"
    assert req.raw_query == "current=1&size=1"
    assert req.body == b""
    assert_common_headers(req)
    assert "requestInfo" not in req.query
    assert isinstance(page, Page)
    assert (page.total, page.current, page.size, len(page)) == (8, 1, 1, 1)
    image = page.items[0]
    assert isinstance(image, Image)
    assert image.image_id == "img-kvvfk28fcjc0mt"
    assert image.platform is Platform.CCLINUX
    assert image.progress == 100
    assert image.image_tags == []
    assert image.visibility is Visibility.PUBLIC
    assert image.boot_mode is BootMode.UEFI
    assert image.os_version == "v2"
    assert image.created_at == datetime(2023, 5, 23, 21, 46, 14, tzinfo=timezone.utc)


async def test_list_images_defaults(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images", ex.load(ex.LIST_IMAGES))
    await ims.list_images()
    assert fake.requests[0].query == {"current": "1", "size": "10"}


async def test_get_image(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", ex.load(ex.GET_IMAGE))
    image = await ims.get_image("img-kvvfk28fcjc0mt")
    (req,) = fake.requests
    assert req.method == "GET"
    assert req.raw_query == ""
    assert_common_headers(req)
    assert image.status is ImageStatus.ACTIVE
    assert image.size == 27205947
    assert image.checksum == "29a9d18dc5e0aa0f14707cffda13fa92"
    assert image.instructions is Instruction.BITS_32
    assert image.disk_format is DiskFormat.QCOW2
    assert image.created_at is not None
    assert image.created_at.utcoffset() == timedelta(hours=8)


async def test_get_image_escapes_the_id(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images/a/b c", ex.load(ex.GET_IMAGE))
    await ims.get_image("a/b c")
    assert fake.requests[0].raw_path == "/api/image/v1/images/a%2Fb%20c"


async def test_update_private_image(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("PUT", "/private-images/img-a62z9rb9k8tcwy", ex.load(ex.UPDATE_RESPONSE))
    result = await ims.update_private_image(
        "img-a62z9rb9k8tcwy",
        boot_mode=BootMode.UEFI,
        cpu_arch="arm",
        disk_format="qcow2",
        instruction="64-bits",
        min_disk=20,
        min_ram=1024,
        name="test",
        os_type=OsType.LINUX,
        os_version="kylin-v10-sp3",
        platform="kylin",
    )
    assert result is None
    (req,) = fake.requests
    assert req.method == "PUT"
    assert req.headers["Content-Type"] == "application/json"
    assert_common_headers(req)
    assert req.json == ex.load(ex.UPDATE_REQUEST)


async def test_create_private_image_sends_a_flat_body(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/private-images", ex.load(ex.CREATE_RESPONSE))
    image = await ims.create_private_image(
        disk_format="qcow2",
        min_disk=10,
        min_ram=512,
        name="centos8.2",
        image_type=ImageType.OS_IMAGE,
        instruction="64-bits",
        cpu_arch=CpuArch.X86,
        os_type="linux",
        platform="centos",  # any casing; sent as the vendor's "CentOS"
        visibility="private",
        usage=Usage.ECS,
        department_id="7074631167051202560",
        resource_group_id="",
        tenant_id="7074631167042813952",
    )
    (req,) = fake.requests
    assert req.method == "POST" and req.path == "/api/image/v1/private-images"
    assert_common_headers(req)
    assert req.json == ex.load(ex.CREATE_REQUEST)
    assert "image" not in req.json  # flat, not nested
    assert image.image_id == "img-ja541mkm4kxt67"
    assert image.status is ImageStatus.QUEUED
    assert image.progress == 0
    assert image.owner == "7074631167042813952"
    assert image.created_at == datetime(2023, 6, 15, 6, 2, 3, 756000, tzinfo=timezone.utc)


async def test_create_private_image_optional_fields(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/private-images", ex.load(ex.CREATE_RESPONSE))
    await ims.create_private_image(
        name="镜像 web-01",
        disk_format=DiskFormat.RAW,
        min_disk=1,
        min_ram=0,
        image_type="data_image",
        instruction=Instruction.BITS_32,
        cpu_arch="ARM",
        os_type="Windows",
        platform=Platform.WINDOWS,
        visibility=Visibility.PUBLIC,
        usage="bms",
        department_id="d",
        tenant_id="t",
        description="测试",
        image_tags=[{"key": "env", "value": "prod"}],
        boot_mode="uefi",
        os_version="2019",
    )
    body = fake.requests[0].json
    assert body["description"] == "测试"
    assert "describe" not in body and "instructions" not in body
    assert body["instruction"] == "32-bits"
    assert body["imageTags"] == [{"key": "env", "value": "prod"}]
    assert body["bootMode"] == "UEFI"
    assert body["cpuArch"] == "arm"
    assert body["osType"] == "windows"
    assert body["osVersion"] == "2019"
    assert "resourceGroupId" not in body
    assert fake.requests[0].body.decode("utf-8").count("镜像") == 1  # UTF-8, not \\u escapes


async def test_list_private_images_plain(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/private-images", ex.load(ex.LIST_PRIVATE_IMAGES))
    page = await ims.list_private_images(current=1, size=1)
    (req,) = fake.requests
    assert req.raw_query == "current=1&size=1"
    assert_common_headers(req)
    image = page.items[0]
    assert image.owner == "7074927169066926081"
    assert image.tenant_name == "test"


@pytest.mark.parametrize(
    "filter_arg",
    [
        "name:lk:1|imageId:eq:1",
        Filter().name_contains("1").image_id_equals("1"),
        F.lk("name", "1") | F.eq("imageId", "1"),
    ],
)
async def test_list_private_images_filter(
    fake: FakeIMS, ims: IMSSession, filter_arg: Filter | str
) -> None:
    fake.on("GET", "/private-images", ex.load(ex.LIST_PRIVATE_IMAGES))
    await ims.list_private_images(current=1, size=10, filter=filter_arg)
    (req,) = fake.requests
    # As in the vendor's example: requestInfo first, ':' kept, '|' escaped.
    assert (
        req.raw_query == f"requestInfo={REGION}&filter=name:lk:1%7CimageId:eq:1&current=1&size=10"
    )
    assert req.query["filter"] == "name:lk:1|imageId:eq:1"
    assert_common_headers(req)


async def test_delete_private_image(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("DELETE", "/private-images/img-kvvfk28fcjc0mt", ex.load(ex.DELETE_RESPONSE))
    assert await ims.delete_private_image("img-kvvfk28fcjc0mt") is None
    (req,) = fake.requests
    assert req.method == "DELETE" and req.body == b""
    assert_common_headers(req)


async def test_import_image(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/private-images/import", ex.load(ex.IMPORT_RESPONSE))
    url = "https://10.253.6.101/CeaKE/zhangyuhe/kylinv10sp3-20240228-k8s.qcow2"
    image = await ims.import_image(
        department_id="1813606081461485577",
        resource_group_id="",
        name="导入镜像",
        min_disk=10,
        min_ram=1024,
        cpu_arch="x86",
        disk_format="qcow2",
        os_type="linux",
        usage="ecs",
        platform="CCLinux",
        instruction="32-bits",
        image_url=url,
        tenant_id="1813606081461485576",
        os_version="v2",
        volume_images=[VolumeImage(image_url=url, min_disk=10)],
    )
    (req,) = fake.requests
    assert_common_headers(req)
    expected = ex.load(ex.IMPORT_REQUEST)
    # Not in the request table (only in the example); the SDK does not invent them.
    del expected["imageSource"], expected["region"]
    assert req.json == expected
    assert image.image_id == "img-gy4vuyga35szng"
    assert image.status is ImageStatus.SAVING
    assert image.image_type is ImageType.WHOLE_IMAGE
    assert image.name == "导入测试"


async def test_import_image_volume_images_as_mappings(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/private-images/import", ex.load(ex.IMPORT_RESPONSE))
    await ims.import_image(
        name="x1", min_disk=1, min_ram=1, cpu_arch="x86", disk_format="raw", os_type="other",
        os_version="", platform="other", usage="cks", instruction="64-bits",
        department_id="d", tenant_id="t", image_url="https://h/a.raw",
        image_type="whole_image", description="de",
        volume_images=[{"image_url": "https://h/b.raw", "min_disk": 3}, {"imageUrl": "u2"}],
    )  # fmt: skip
    body = fake.requests[0].json
    assert body["volumeImages"] == [
        {"imageUrl": "https://h/b.raw", "minDisk": 3},
        {"imageUrl": "u2"},
    ]
    assert body["visibility"] == "private"
    assert body["imageType"] == "whole_image"
    assert body["description"] == "de"


def _image_with(status: str, **extra: object) -> dict[str, object]:
    payload = ex.load(ex.GET_IMAGE)
    payload["data"]["status"] = status
    payload["data"].update(extra)
    return payload


async def test_wait_for_image_until_active(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "GET",
        "/images/img-kvvfk28fcjc0mt",
        _image_with("queued"),
        _image_with("saving"),
        _image_with("active"),
    )
    image = await ims.wait_for_image("img-kvvfk28fcjc0mt", interval=0.01, timeout=10)
    assert image.status is ImageStatus.ACTIVE
    assert len(fake.requests) == 3


async def test_wait_for_image_initial_interval_backs_off(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "GET",
        "/images/img-kvvfk28fcjc0mt",
        _image_with("queued"),
        _image_with("saving"),
        _image_with("saving"),
        _image_with("active"),
    )
    # pauses 0.01, 0.02, 0.04 s: well inside the timeout, though `interval` is 30 s
    image = await ims.wait_for_image(
        "img-kvvfk28fcjc0mt", interval=30, initial_interval=0.01, timeout=5
    )
    assert image.status is ImageStatus.ACTIVE
    assert len(fake.requests) == 4
    with pytest.raises(ValidationError):
        await ims.wait_for_image("img-kvvfk28fcjc0mt", initial_interval=0)


async def test_wait_for_image_other_target(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", _image_with("queued"), _image_with("saving"))
    image = await ims.wait_for_image(
        "img-kvvfk28fcjc0mt", until=["saving", ImageStatus.ACTIVE], interval=0.01
    )
    assert image.status is ImageStatus.SAVING


async def test_wait_for_image_killed(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "GET",
        "/images/img-kvvfk28fcjc0mt",
        _image_with("saving"),
        _image_with("killed", errMessage="IMG.OperationFailed.ImageSize"),
    )
    with pytest.raises(ImageKilledError) as info:
        await ims.wait_for_image("img-kvvfk28fcjc0mt", interval=0.01)
    assert info.value.image_id == "img-kvvfk28fcjc0mt"
    assert info.value.stage == "wait"
    assert "ImageSize" in str(info.value)


async def test_wait_for_image_deleted(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", _image_with("deleted"))
    with pytest.raises(UploadFailedError) as info:
        await ims.wait_for_image("img-kvvfk28fcjc0mt", interval=0.01)
    assert not isinstance(info.value, ImageKilledError)


async def test_wait_for_image_timeout(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", _image_with("queued"))
    with pytest.raises(WaitTimeoutError) as info:
        await ims.wait_for_image("img-kvvfk28fcjc0mt", timeout=0.3, interval=0.05)
    assert info.value.last_status == "queued"
    assert info.value.image_id == "img-kvvfk28fcjc0mt"
    assert isinstance(info.value, TimeoutError)
    assert 2 <= len(fake.requests) <= 10


async def test_wait_for_image_timeout_while_request_hangs(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", Reply(payload=_image_with("queued"), delay=5))
    with pytest.raises(WaitTimeoutError) as info:
        await ims.wait_for_image("img-kvvfk28fcjc0mt", timeout=0.3, interval=0.05)
    assert info.value.last_status is None
