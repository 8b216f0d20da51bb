"""The converter on the vendor's own example payloads and their quirks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import ims_vendor_examples as ex
import pytest

from aioims import (
    BootMode,
    CpuArch,
    ExportBucket,
    Image,
    ImageShare,
    ImageStatus,
    ImageType,
    Instruction,
    OsType,
    Platform,
    UploadTarget,
    Usage,
    Visibility,
)
from aioims.models import from_wire, to_wire
from aioims.models._converter import page_from_wire


def data(text: str) -> Any:
    return ex.load(text)["data"]


def image(text: str, **changes: Any) -> Image:
    payload = data(text)
    if "list" in payload:
        payload = payload["list"][0]
    payload.update(changes)
    return from_wire(payload, Image)


def test_list_images_example() -> None:
    page = page_from_wire(data(ex.LIST_IMAGES), Image)
    assert (page.size, page.current, page.total) == (1, 1, 8)
    img = page.items[0]
    assert img.id == 12
    assert img.image_type is ImageType.OS_IMAGE
    assert img.min_disk == 5 and img.min_ram == 512
    assert img.cpu_arch is CpuArch.X86
    assert img.os_type is OsType.LINUX
    assert img.usage is Usage.ECS
    assert img.upload_id == ""
    assert img.region == "ecs49"


@pytest.mark.parametrize(("raw", "expected"), [("100", 100), ("0%", 0), (0, 0), ("55%", 55)])
def test_progress_forms(raw: Any, expected: int) -> None:
    assert image(ex.GET_IMAGE, progress=raw).progress == expected


def test_progress_from_examples() -> None:
    assert image(ex.GET_IMAGE).progress == 100
    assert image(ex.CREATE_RESPONSE).progress == 0  # "0%"


@pytest.mark.parametrize(("raw", "expected"), [(12, 12), ("218", 218), ("abc-1", "abc-1")])
def test_id_int_or_str(raw: Any, expected: Any) -> None:
    assert image(ex.GET_IMAGE, id=raw).id == expected


def test_image_tags_null_empty_and_tags_alias() -> None:
    assert image(ex.LIST_IMAGES).image_tags == []  # null
    assert image(ex.GET_IMAGE).image_tags == []  # []
    assert image(ex.CREATE_RESPONSE).image_tags == []  # [ \n ]
    tagged = dict(data(ex.COPY_RESPONSE))
    del tagged["imageTags"]
    tagged["tags"] = [{"key": "k", "value": "v"}]
    assert from_wire(tagged, Image).image_tags == [{"key": "k", "value": "v"}]


def test_describe_and_instructions() -> None:
    copied = image(ex.COPY_RESPONSE)
    assert copied.description == "siri-describe"
    assert copied.instructions is Instruction.BITS_64
    assert to_wire(copied)["describe"] == "siri-describe"
    only_request_name = data(ex.GET_IMAGE)
    del only_request_name["instructions"]
    only_request_name["instruction"] = "64-bits"
    assert from_wire(only_request_name, Image).instructions is Instruction.BITS_64


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2023-05-24T05:46:14+08:00", datetime(2023, 5, 23, 21, 46, 14, tzinfo=timezone.utc)),
        ("2023-07-14T07:43:56Z", datetime(2023, 7, 14, 7, 43, 56, tzinfo=timezone.utc)),
        (
            "2023-06-15T06:02:03.756Z",
            datetime(2023, 6, 15, 6, 2, 3, 756000, tzinfo=timezone.utc),
        ),
        (
            "2024-04-02T12:30:35.2Z",
            datetime(2024, 4, 2, 12, 30, 35, 200000, tzinfo=timezone.utc),
        ),
        ("2024-04-02T12:30:35", datetime(2024, 4, 2, 12, 30, 35, tzinfo=timezone.utc)),
    ],
)
def test_timestamps(raw: str, expected: datetime) -> None:
    parsed = image(ex.GET_IMAGE, createdAt=raw).created_at
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


def test_offset_is_kept() -> None:
    parsed = image(ex.GET_IMAGE).created_at
    assert parsed is not None and parsed.utcoffset() == timedelta(hours=8)


def test_unknown_fields_kept_in_extra() -> None:
    img = image(ex.GET_IMAGE, imageSource=1, newField={"a": [1]})
    assert img.extra == {"imageSource": 1, "newField": {"a": [1]}}
    wire = to_wire(img)
    assert wire["imageSource"] == 1 and wire["newField"] == {"a": [1]}


@pytest.mark.parametrize(
    ("field", "raw", "member"),
    [
        ("platform", "cclinux", Platform.CCLINUX),
        ("platform", "CCLinux", Platform.CCLINUX),
        ("platform", "centos", Platform.CENTOS),
        ("osType", "Linux", OsType.LINUX),
        ("bootMode", "uefi", BootMode.UEFI),
        ("visibility", "shared", Visibility.SHARED),
        ("status", "ACTIVE", ImageStatus.ACTIVE),
    ],
)
def test_tolerant_enums(field: str, raw: str, member: Any) -> None:
    img = image(ex.GET_IMAGE, **{field: raw})
    value = getattr(img, {"osType": "os_type", "bootMode": "boot_mode"}.get(field, field))
    assert value is member


def test_unknown_enum_values_are_kept() -> None:
    img = image(ex.GET_IMAGE, osType="kylin", platform="debian", status="paused")
    assert img.os_type is not None and img.os_type.value == "kylin" and not img.os_type.known
    assert img.platform is not None and img.platform.value == "debian"
    assert img.status is not None and not img.status.known


def test_empty_strings_mean_absent() -> None:
    img = image(ex.COPY_RESPONSE)
    assert img.capacity_percentage == "" and img.err_message == ""
    assert img.volume_images == []  # null
    assert img.shared is False
    odd = image(ex.GET_IMAGE, minDisk="", createdAt="", bootMode="")
    assert odd.min_disk is None and odd.created_at is None and odd.boot_mode is None


def test_missing_fields_are_tolerated() -> None:
    img = image(ex.IMPORT_RESPONSE)  # the truncated example
    assert img.image_id == "img-gy4vuyga35szng"
    assert img.checksum is None and img.platform is None and img.image_tags == []
    assert from_wire({}, Image).image_id == ""


def test_shares() -> None:
    share = from_wire(data(ex.LIST_IMAGE_SHARES)["list"][0], ImageShare)
    assert share.image is None and share.user_name == "lptest"
    shared = page_from_wire(data(ex.LIST_SHARED_IMAGES), ImageShare).items[0]
    assert isinstance(shared.image, Image)
    assert shared.image.extra == {}
    assert shared.image.path == "/var/lib/libvirt/images/test.qcow2"
    assert shared.image.created_at == datetime(2023, 7, 14, 7, 43, 56, tzinfo=timezone.utc)


def test_export_buckets() -> None:
    buckets = [from_wire(b, ExportBucket) for b in data(ex.LIST_EXPORT_BUCKETS)]
    assert [b.name for b in buckets] == ["hello1", "hello2"]
    assert {(b.az_id, b.cell_id) for b in buckets} == {("AZ0", "ecs49")}


def test_upload_target_and_masked_repr() -> None:
    target = from_wire(data(ex.UPLOAD_PREPARE_RESPONSE), UploadTarget)
    assert target.image_url == ""
    assert target.domain == "https://10.253.101.4:8009"
    assert target.secret_key == "R3rvxgFc1x9WkynfO4B8bYw6I78uYKtGgvdFanMk"
    for text in (repr(target), str(target)):
        assert "R3rvxgFc1x9WkynfO4B8bYw6I78uYKtGgvdFanMk" not in text
        assert "E8iGSz1FLwTsaIw9MAEh" in text  # the access key id is not secret
    with_token = from_wire(
        {**data(ex.UPLOAD_PREPARE_RESPONSE), "token": "SESSION-TOK"}, UploadTarget
    )
    assert "SESSION-TOK" not in repr(with_token)
    assert to_wire(target)["image_url"] == ""
