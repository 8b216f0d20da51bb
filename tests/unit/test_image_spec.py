"""aioims.ImageSpec: defaults, validation before anything is sent, the
mapping/kwargs round trip, and its use by create_private_image /
upload_image / copy_shared_image (against a small recording server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aioims import (
    DiskFormat,
    HeaderAuth,
    ImageSpec,
    IMSSession,
    OsType,
    TenantDefaults,
    ValidationError,
)
from aioims.models.spec import DEFAULTS, FIELDS, detect_disk

IMAGE = {"imageId": "img-ja541mkm4kxt67", "name": "web", "status": "queued"}


def test_only_name_is_required_and_defaults_are_the_clis() -> None:
    spec = ImageSpec(name="web")
    assert (spec.disk_format, spec.min_disk) == (None, None)  # from the file at upload
    assert spec.to_create_kwargs({"tenant_id": "t", "department_id": "d"}) == {
        "name": "web", "disk_format": "qcow2", "min_disk": 1, "min_ram": 0,
        "image_type": "os_image", "instruction": "64-bits", "cpu_arch": "x86",
        "os_type": "linux", "platform": "other", "visibility": "private", "usage": "ecs",
        "tenant_id": "t", "department_id": "d",
    }  # fmt: skip
    assert DEFAULTS["os_type"] is OsType.LINUX
    with pytest.raises(TypeError):
        ImageSpec()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ImageSpec("web")  # type: ignore[misc]  # kw_only


def test_frozen_and_strings_become_enums() -> None:
    spec = ImageSpec(name="web", platform="centos", disk_format="RAW", boot_mode="uefi")
    assert spec.platform.value == "CentOS" and spec.disk_format is DiskFormat.RAW
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]
    assert spec.replace(name="other").name == "other" and spec.name == "web"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "bad/name"}, "name"),
        ({"name": "ok", "os_type": "beos"}, "os_type"),
        ({"name": "ok", "min_disk": -1}, "min_disk"),
        ({"name": "ok", "min_ram": True}, "min_ram"),
        ({"name": "ok", "visibility": "shared"}, "visibility"),
        ({"name": "ok", "description": "x"}, "description"),
        ({"name": "ok", "image_tags": "a,b"}, "image_tags"),
        ({"name": "ok", "tenant_id": " t "}, "tenant_id"),
        ({"name": "ok", "disk_format": 3}, "disk_format"),
    ],
)
def test_invalid_values_raise_validation_error(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImageSpec(**kwargs)
    assert info.value.field == field


def test_from_mapping_accepts_snake_and_camel_case() -> None:
    spec = ImageSpec.from_mapping(
        {"name": "web", "osType": "windows", "min_disk": 20, "tags": ["a"], "tenantId": "t"}
    )
    assert spec.os_type is OsType.WINDOWS and spec.min_disk == 20
    assert spec.image_tags == ("a",) and spec.tenant_id == "t"
    cases = [({"osType": "linux"}, "name"), ({"name": "w", "colour": "red"}, "colour"),
             ({"name": "w", "osType": "linux", "os_type": "linux"}, "os_type")]  # fmt: skip
    for bad, field in cases:
        with pytest.raises(ValidationError) as info:
            ImageSpec.from_mapping(bad)
        assert info.value.field == field


def test_round_trip_through_create_kwargs() -> None:
    spec = ImageSpec(name="web", disk_format="raw", min_disk=3, description="hello",
                     image_tags=[{"k": "v"}], tenant_id="t", department_id="d",
                     resource_group_id="rg", os_version="22.04", boot_mode="BIOS")  # fmt: skip
    assert ImageSpec.from_mapping(spec.to_create_kwargs()) == spec
    assert set(spec.to_create_kwargs()) <= set(FIELDS)


def test_tenant_defaults_fill_only_missing_ids() -> None:
    spec = ImageSpec(name="web", tenant_id="mine")
    filled = spec.with_defaults(TenantDefaults(tenant_id="t", department_id="d",
                                               resource_group_id="rg"))  # fmt: skip
    assert (filled.tenant_id, filled.department_id, filled.resource_group_id) == (
        "mine", "d", "rg")  # fmt: skip
    # "" is "explicitly no resource group" and is kept; None takes the default
    explicit = ImageSpec(name="web", resource_group_id="")
    explicit = explicit.with_defaults({"resource_group_id": "rg"})
    assert explicit.resource_group_id == ""
    with pytest.raises(ValidationError) as info:
        spec.to_create_kwargs()
    assert info.value.field == "department_id" and "IMS_DEPARTMENT_ID" in info.value.message


def test_detect_disk(tmp_path: Path) -> None:
    raw = tmp_path / "disk.img"
    raw.write_bytes(b"\0" * 1000)
    assert detect_disk(raw) == (DiskFormat.RAW, 1000)
    qcow = tmp_path / "disk.qcow2"
    qcow.write_bytes(b"QFI\xfb" + b"\0" * 20 + (5 << 30).to_bytes(8, "big") + b"\0" * 64)
    assert detect_disk(qcow) == (DiskFormat.QCOW2, 5 << 30)
    spec = ImageSpec(name="q").for_file(qcow)
    assert (spec.disk_format, spec.min_disk) == (DiskFormat.QCOW2, 6)
    assert ImageSpec(name="q", min_disk=50).for_file(raw).min_disk == 50


# --- on the wire ----------------------------------------------------------------


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[list[tuple[str, str, Any]], str]]:
    seen: list[tuple[str, str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.method, request.path, json.loads(body) if body else None))
        envelope = {"code": "Success", "message": "ok", "data": IMAGE,
                    "requestId": "req-1"}  # fmt: skip
        return web.json_response(envelope)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield seen, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _session(url: str, **kwargs: Any) -> IMSSession:
    return IMSSession(url, "region0", auth=HeaderAuth.bearer("tok"), **kwargs)


async def test_create_from_a_spec_uses_session_defaults(recorder: Any) -> None:
    seen, url = recorder
    async with _session(url, defaults={"tenant_id": "t", "department_id": "d"}) as ims:
        image = await ims.create_private_image(ImageSpec(name="web", os_type="windows"))
        await ims.create_private_image(ImageSpec(name="web"), name="override", min_disk=9)
        await ims.create_private_image(name="kw-only", resource_group_id=None)
    assert image.image_id == IMAGE["imageId"]
    (_, path, body), (_, _, body2), (_, _, body3) = seen
    assert path == "/api/image/v1/private-images"
    assert body["osType"] == "windows" and body["tenantId"] == "t"
    assert body["departmentId"] == "d" and "resourceGroupId" not in body
    assert (body2["name"], body2["minDisk"]) == ("override", 9)
    assert body3["name"] == "kw-only" and body3["diskFormat"] == "qcow2"


async def test_nothing_is_sent_for_an_invalid_or_incomplete_spec(
    recorder: Any, tmp_path: Path
) -> None:
    seen, url = recorder
    file = tmp_path / "x.img"
    file.write_bytes(b"\0" * 10)
    async with _session(url) as ims:
        with pytest.raises(ValidationError, match="tenant_id"):
            await ims.create_private_image(ImageSpec(name="web"))
        with pytest.raises(ValidationError, match="name"):
            await ims.create_private_image(os_type="linux")
        with pytest.raises(ValidationError, match="tenant_id"):
            await ims.upload_image(file, ImageSpec(name="web"))
        with pytest.raises(ValidationError, match="spec"):
            await ims.upload_image(file, {"name": "web"})  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="tenant_id"):
            await ims.copy_shared_image("share-1", name="copy")
    assert seen == []


async def test_copy_shared_image_accepts_none_like_create(recorder: Any) -> None:
    seen, url = recorder
    async with _session(url, defaults=TenantDefaults(tenant_id="t", department_id="d")) as ims:
        await ims.copy_shared_image("share-1", name="copy", resource_group_id=None)
        await ims.copy_shared_image("share-1", name="copy", tenant_id="t2",
                                    department_id="d2", resource_group_id="rg")  # fmt: skip
    (_, path, body), (_, _, body2) = seen
    assert path == "/api/image/v1/shared-images/share-1/copy"
    assert body == {"tenantId": "t", "departmentId": "d", "resourceGroupId": "", "name": "copy"}
    assert (body2["tenantId"], body2["resourceGroupId"]) == ("t2", "rg")


async def test_upload_image_legacy_kwargs_warn_and_reach_the_uploader(
    recorder: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec (resolved from the file, defaults filled) is what the Uploader
    gets, in whichever form its entry point takes."""
    from aioims import session as session_mod

    got: list[Any] = []

    async def fake_run(uploader: Any, path: Any, spec: Any, **kw: Any) -> Any:
        got.append((spec, kw))
        return None

    monkeypatch.setattr(session_mod, "_run_uploader", fake_run)
    file = tmp_path / "x.img"
    file.write_bytes(b"\0" * 10)
    _, url = recorder
    async with _session(url, defaults={"tenant_id": "t", "department_id": "d"}) as ims:
        with pytest.warns(DeprecationWarning, match="ImageSpec"):
            await ims.upload_image(file, name="legacy", os_type="windows")  # type: ignore[call-arg]
        await ims.upload_image(file, ImageSpec(name="new"))
        await ims.upload_image(file, image_id="img-1")
    (legacy, _), (new, _), (none, kw) = got
    assert legacy == ImageSpec(name="legacy", os_type="windows", disk_format="raw", min_disk=1,
                               tenant_id="t", department_id="d")  # fmt: skip
    assert new.name == "new" and new.disk_format is DiskFormat.RAW
    assert none is None and kw["image_id"] == "img-1"


async def test_the_uploader_adapter_matches_either_entry_point(tmp_path: Path) -> None:
    from aioims.session import _run_uploader, _uploader_takes_spec

    class Old:
        async def upload(self, path: Any, *, image_id: Any = None, checkpoint: Any = None,
                         **create_kwargs: Any) -> Any:  # fmt: skip
            self.got = create_kwargs
            from aioims import Image

            return Image()

    class New:
        async def upload(self, path: Any, spec: Any, *, image_id: Any = None,
                         checkpoint: Any = None, **legacy: Any) -> Any:  # fmt: skip
            self.got = spec
            from aioims import Image

            return Image()

    spec = ImageSpec(name="w", tenant_id="t", department_id="d", disk_format="raw", min_disk=1)
    old, new = Old(), New()
    assert not _uploader_takes_spec(old) and _uploader_takes_spec(new)  # type: ignore[arg-type]
    await _run_uploader(old, tmp_path, spec, image_id=None, checkpoint=None)  # type: ignore[arg-type]
    await _run_uploader(new, tmp_path, spec, image_id=None, checkpoint=None)  # type: ignore[arg-type]
    assert old.got == spec.to_create_kwargs() and new.got is spec
