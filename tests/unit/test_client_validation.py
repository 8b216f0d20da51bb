"""aioims.validation: the reference's input rules."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioims import (
    BootMode,
    CpuArch,
    DiskFormat,
    ExportBucket,
    ImageType,
    Instruction,
    OsType,
    Platform,
    UploadResult,
    Usage,
    ValidationError,
    Visibility,
    VolumeImage,
)
from aioims import validation as v

# --- name ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "test",
        "centos8.2",
        "web-01_prod.v2",
        "导入镜像",
        "名称",
        "镜像 web 01",
        "Ubuntu 22.04 LTS",
        "a" * 128,
        "镜" * 128,
        "1",
        "a b",
    ],
)
def test_valid_names(name: str) -> None:
    assert v.check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        " web",
        "web ",
        "a" * 129,
        "web/01",
        "web@01",
        "web:01",
        "web|01",
        "web\t01",
        "web\n",
        "web🙂",
        "café",  # only ASCII letters
        "웹",  # Korean is not Chinese
        "ウェブ",  # nor is Katakana
        "名称，",  # full-width punctuation
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        v.check_name(name)
    assert info.value.field == "name"


def test_name_must_be_a_string() -> None:
    with pytest.raises(ValidationError):
        v.check_name(None)
    with pytest.raises(ValidationError):
        v.check_name(b"bytes")


_NAME_CHARS = st.sampled_from("abcxyzABCXYZ0123456789-._ " + "镜像名称测试导入中文")


@settings(max_examples=150, deadline=None)
@given(st.text(_NAME_CHARS, min_size=1, max_size=128))
def test_names_from_the_allowed_alphabet(name: str) -> None:
    if name.startswith(" ") or name.endswith(" "):
        with pytest.raises(ValidationError):
            v.check_name(name)
    else:
        assert v.check_name(name) == name


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_names_never_crash(name: str) -> None:
    with contextlib.suppress(ValidationError):
        v.check_name(name)


# --- description ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["测试", "de", "x" * 256, "any chars: /@!🙂"])
def test_valid_descriptions(text: str) -> None:
    assert v.check_description(text) == text


@pytest.mark.parametrize("text", ["", "x", "x" * 257])
def test_invalid_descriptions(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        v.check_description(text)
    assert info.value.field == "description"


# --- user ids --------------------------------------------------------------------


def test_user_ids() -> None:
    assert v.check_user_ids(["7085524801413873664"]) == ["7085524801413873664"]
    ids = [str(i) for i in range(50)]
    assert v.check_user_ids(ids) == ids
    assert v.check_user_ids(iter(["a", "b"])) == ["a", "b"]
    assert v.check_user_ids(("a",)) == ["a"]


@pytest.mark.parametrize(
    "ids",
    [
        [],
        [str(i) for i in range(51)],
        ["1", "1"],
        ["1", ""],
        ["  "],
        [1],
        [None],
        "123",
        None,
        42,
    ],
)
def test_invalid_user_ids(ids: Any) -> None:
    with pytest.raises(ValidationError) as info:
        v.check_user_ids(ids)
    assert info.value.field == "user_ids"


# --- enums ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "value", "wire"),
    [
        (DiskFormat, "qcow2", "qcow2"),
        (DiskFormat, DiskFormat.RAW, "raw"),
        (DiskFormat, "QCOW2", "qcow2"),
        (Platform, "cclinux", "CCLinux"),
        (Platform, "centos", "CentOS"),
        (Platform, Platform.KYLIN, "kylin"),
        (OsType, "Linux", "linux"),
        (BootMode, "uefi", "UEFI"),
        (CpuArch, "ARM", "arm"),
        (Instruction, "64-bits", "64-bits"),
        (ImageType, "whole_image", "whole_image"),
        (Usage, "sec", "sec"),
        (Visibility, "market", "market"),
        (UploadResult, "FAILED", "failed"),
    ],
)
def test_enum_accepts_members_and_strings(cls: Any, value: Any, wire: str) -> None:
    assert v.check_enum(cls, value, "f") == wire


@pytest.mark.parametrize(
    ("cls", "value"),
    [
        (DiskFormat, "vmdk"),
        (Platform, "debian"),
        (OsType, "kylin"),  # seen in responses, not a valid request value
        (Instruction, "64"),
        (DiskFormat, ""),
        (DiskFormat, None),
        (DiskFormat, 1),
        (DiskFormat, CpuArch.X86),  # another enum
        (DiskFormat, DiskFormat("vhd")),  # a tolerant pseudo-member is not known
    ],
)
def test_enum_is_strict(cls: Any, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        v.check_enum(cls, value, "the_field")
    assert info.value.field == "the_field"


def test_upload_result() -> None:
    assert v.check_upload_result("success") == "success"
    assert v.check_upload_result(UploadResult.FAILED) == "failed"
    for bad in ("ok", "", "done", None):
        with pytest.raises(ValidationError):
            v.check_upload_result(bad)


# --- numbers, ids, paging -----------------------------------------------------------


def test_non_negative() -> None:
    assert v.check_non_negative(0, "size") == 0
    assert v.check_non_negative(10**12, "size") == 10**12
    for bad in (-1, 1.5, "10", None, True):
        with pytest.raises(ValidationError):
            v.check_non_negative(bad, "size")


def test_paging() -> None:
    assert v.check_page(1, 1) == (1, 1)
    for current, size in ((0, 10), (1, 0), (-1, 10), (1, -5), (1.0, 10), (True, 10)):
        with pytest.raises(ValidationError):
            v.check_page(current, size)


def test_ids() -> None:
    assert v.check_id("img-kvvfk28fcjc0mt") == "img-kvvfk28fcjc0mt"
    for bad in ("", "   ", " img-x", "img-x\n", None, 5):
        with pytest.raises(ValidationError):
            v.check_id(bad)


# --- composite values -----------------------------------------------------------------


def test_bucket() -> None:
    wire = {"name": "b", "azId": "AZ0", "cellId": "ecs49"}
    assert v.check_bucket(ExportBucket(name="b", az_id="AZ0", cell_id="ecs49")) == wire
    assert v.check_bucket(wire) == wire
    assert v.check_bucket({"name": "b", "az_id": "AZ0", "cell_id": "ecs49"}) == wire
    for bad in ({"name": "b"}, {"name": "", "azId": "a", "cellId": "c"}, "b", None):
        with pytest.raises(ValidationError):
            v.check_bucket(bad)


def test_volume_images() -> None:
    assert v.check_volume_images([VolumeImage(image_url="u", min_disk=10)]) == [
        {"imageUrl": "u", "minDisk": 10}
    ]
    assert v.check_volume_images([{"image_url": "u"}]) == [{"imageUrl": "u"}]
    assert v.check_volume_images([]) == []
    for bad in ([{"imageUrl": ""}], [{"imageUrl": "u", "minDisk": -1}], ["u"], "u", {"a": 1}):
        with pytest.raises(ValidationError):
            v.check_volume_images(bad)


def test_tags() -> None:
    assert v.check_tags([{"k": "v"}]) == [{"k": "v"}]
    assert v.check_tags(()) == []
    for bad in ("tag", {"k": "v"}, 3):
        with pytest.raises(ValidationError):
            v.check_tags(bad)


def test_validation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        v.check_name("")
