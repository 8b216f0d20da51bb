"""Every documented error the emulator can give, reached by the input that
causes it (table-driven), plus identity, pagination, filter and orderBy."""

# ruff: noqa: E501 - the error table is one case a line; pytest fixtures imported from aioims.testing are parameters here

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from test_emulator_support import Api, create_body, update_body

from aioims.testing import EmulatorProcess, ims_emulator  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)

INV = "IMG.InvalidParameter"


@pytest.fixture
async def api(ims_emulator: EmulatorProcess) -> AsyncIterator[Api]:
    await ims_emulator.aadmin("DELETE", "/_emulator/faults")
    async with aiohttp.ClientSession() as http:
        yield Api(http, ims_emulator.url, ims_emulator.users)


class World:
    """Images in every state, owned by alice unless named otherwise."""

    queued: str
    active: str
    saving: str
    shared: str  # active, shared with bob
    public: str  # active, public
    bob_image: str
    share_id: str  # share of `shared` with bob


async def make_world(api: Api, emulator: EmulatorProcess) -> World:
    world = World()
    bob = emulator.users["bob"]
    world.queued = (await api.create(minDisk=1))["imageId"]
    world.active = (await api.create(name="active"))["imageId"]
    await api.upload(world.active, b"a" * 1000)
    world.shared = (await api.create(name="shared"))["imageId"]
    await api.upload(world.shared, b"s" * 1000)
    await api.ok(
        "POST",
        f"/private-images/{world.shared}/share",
        json={"shares": {"user_ids": [bob["userId"]]}},
    )
    shares = await api.ok(
        "GET", f"/private-images/{world.shared}/share", params={"current": 1, "size": 1}
    )
    world.share_id = shares["list"][0]["shareId"]
    world.public = (await api.create(name="public", visibility="public"))["imageId"]
    await api.upload(world.public, b"p" * 100)
    world.bob_image = (await api.create(user="bob", name="bobs"))["imageId"]
    # one image held in `saving` by a long activation delay
    world.saving = (await api.create(name="saving"))["imageId"]
    await emulator.aadmin("POST", "/_emulator/faults", {"activate_delay": 60})
    await api.ok("POST", f"/private-images/{world.saving}/upload-prepare", json={"size": 5})
    await api.ok("POST", f"/private-images/{world.saving}/upload-done", json={"result": "success"})
    await emulator.aadmin("DELETE", "/_emulator/faults")
    assert (await api.image(world.saving))["status"] == "saving"
    return world


# (code, method, path template, keyword arguments, text the message must contain)
Case = tuple[str, str, str, dict[str, Any], str]


def cases(emulator: EmulatorProcess) -> list[Case]:
    alice = emulator.users["alice"]
    bob = emulator.users["bob"]
    carol = emulator.users["carol"]
    ok_body = create_body(alice)
    prepare = "/private-images/{queued}/upload-prepare"
    share = "/private-images/{shared}/share"
    page = {"current": 1, "size": 10}
    copy_body = {
        "tenantId": bob["tenantId"], "departmentId": bob["departmentId"],
        "resourceGroupId": "", "name": "copy",
    }  # fmt: skip
    return [
        # headers and identity
        (INV, "GET", "/private-images", {"params": page, "region": None}, "x-regionid"),
        ("IMG.OperationDenied.AuthFail", "GET", "/private-images", {"params": page, "user": None}, "Authorization"),
        ("IMG.OperationDenied.AuthFail", "GET", "/private-images",
         {"params": page, "user": None, "headers": {"Authorization": "Bearer nope"}}, "token"),
        ("IMG.OperationDenied.AuthFail", "GET", "/private-images",
         {"params": page, "user": None, "headers": {"Authorization": "Basic dG9rZW4tYWxpY2U="}}, ""),
        ("IMG.OperationDenied.Identity", "POST", "/private-images",
         {"json": create_body(alice, tenantId=bob["tenantId"])}, "tenantId"),
        # create validation
        (INV, "POST", "/private-images", {"data": b"{not json"}, "body"),
        (INV, "POST", "/private-images", {"json": [1, 2]}, "body"),
        (INV, "POST", "/private-images", {"json": create_body(alice, name=...)}, "name"),
        (INV, "POST", "/private-images", {"json": create_body(alice, name="x" * 129)}, "name"),
        (INV, "POST", "/private-images", {"json": create_body(alice, name=" lead")}, "name"),
        (INV, "POST", "/private-images", {"json": create_body(alice, name="trail ")}, "name"),
        (INV, "POST", "/private-images", {"json": create_body(alice, name="a/b")}, "name"),
        (INV, "POST", "/private-images", {"json": create_body(alice, name="")}, "name"),
        (INV, "POST", "/private-images", {"json": create_body(alice, description="x")}, "description"),
        (INV, "POST", "/private-images", {"json": create_body(alice, description="x" * 257)}, "description"),
        (INV, "POST", "/private-images", {"json": create_body(alice, minDisk="10")}, "minDisk"),
        (INV, "POST", "/private-images", {"json": create_body(alice, minDisk=0)}, "minDisk"),
        (INV, "POST", "/private-images", {"json": create_body(alice, minDisk=...)}, "minDisk"),
        (INV, "POST", "/private-images", {"json": create_body(alice, minRam=-1)}, "minRam"),
        (INV, "POST", "/private-images", {"json": create_body(alice, minRam=True)}, "minRam"),
        (INV, "POST", "/private-images", {"json": create_body(alice, diskFormat="vmdk")}, "diskFormat"),
        (INV, "POST", "/private-images", {"json": create_body(alice, imageType="vm")}, "imageType"),
        (INV, "POST", "/private-images", {"json": create_body(alice, visibility="shared")}, "visibility"),
        (INV, "POST", "/private-images", {"json": create_body(alice, osType="beos")}, "osType"),
        (INV, "POST", "/private-images", {"json": create_body(alice, platform="suse")}, "platform"),
        (INV, "POST", "/private-images", {"json": create_body(alice, usage="gpu")}, "usage"),
        (INV, "POST", "/private-images", {"json": create_body(alice, cpuArch="mips")}, "cpuArch"),
        (INV, "POST", "/private-images", {"json": create_body(alice, instruction="16-bits")}, "instruction"),
        (INV, "POST", "/private-images", {"json": create_body(alice, instruction=...)}, "instruction"),
        (INV, "POST", "/private-images", {"json": create_body(alice, bootMode="EFI")}, "bootMode"),
        (INV, "POST", "/private-images", {"json": create_body(alice, tenantId=...)}, "tenantId"),
        (INV, "POST", "/private-images", {"json": create_body(alice, departmentId=...)}, "departmentId"),
        (INV, "POST", "/private-images", {"json": create_body(alice, imageTags="x")}, "imageTags"),
        (INV, "POST", "/private-images", {"json": {**ok_body, "tenantId": 7}}, "tenantId"),
        # list parameters
        (INV, "GET", "/private-images", {"params": {"size": 10}}, "current"),
        (INV, "GET", "/private-images", {"params": {"current": 1}}, "size"),
        (INV, "GET", "/private-images", {"params": {"current": 0, "size": 10}}, "current"),
        (INV, "GET", "/private-images", {"params": {"current": "x", "size": 10}}, "current"),
        (INV, "GET", "/images", {"params": {"current": 1, "size": 0}}, "size"),
        (INV, "GET", "/images", {"params": {"current": 1, "size": 1001}}, "size"),
        (INV, "GET", "/private-images", {"params": {**page, "filter": "owner:eq:1"}}, "filter"),
        (INV, "GET", "/private-images", {"params": {**page, "filter": "name:gt:1"}}, "filter"),
        (INV, "GET", "/private-images", {"params": {**page, "filter": "name"}}, "filter"),
        (INV, "GET", "/private-images", {"params": {**page, "orderBy": "color:asc"}}, "orderBy"),
        (INV, "GET", "/shared-images", {"params": {**page, "orderBy": "createdAt:up"}}, "orderBy"),
        (INV, "GET", "/private-images/{shared}/share", {"params": {"current": 1}}, "size"),
        # ids and ownership
        (INV, "GET", "/images/not_an_id", {}, "image_id"),
        ("IMG.DBGet.NoData", "GET", "/images/img-doesnotexist00", {}, "img-doesnotexist00"),
        ("IMG.OperationDenied.Identity", "GET", "/images/{bob_image}", {}, ""),
        ("IMG.OperationDenied.Identity", "PUT", "/private-images/{bob_image}", {"json": update_body()}, ""),
        ("IMG.OperationDenied.Identity", "DELETE", "/private-images/{bob_image}", {}, ""),
        ("IMG.OperationDenied.Identity", "POST", "/private-images/{bob_image}/upload-prepare", {"json": {"size": 5}}, ""),
        ("IMG.OperationDenied.Identity", "POST", "/private-images/{bob_image}/upload-done", {"json": {"result": "failed"}}, ""),
        ("IMG.OperationDenied.Identity", "GET", "/private-images/{bob_image}/file", {}, ""),
        ("IMG.OperationDenied.Identity", "POST", "/private-images/{bob_image}/share",
         {"json": {"shares": {"user_ids": [carol["userId"]]}}}, ""),
        ("IMG.OperationDenied.Identity", "GET", "/private-images/{bob_image}/share", {"params": page}, ""),
        ("IMG.OperationDenied.Identity", "GET", "/private-images/{bob_image}/oss-bucket-list", {}, ""),
        ("IMG.OperationDenied.Identity", "POST", "/custom-images/{bob_image}/export",
         {"json": {"bucket": {"name": "b", "azId": "AZ0", "cellId": "region0"}}}, ""),
        ("IMG.OperationDenied.Identity", "GET", "/private-images/{shared}/file", {"user": "bob"}, ""),
        ("IMG.OperationDenied.Identity", "DELETE", "/private-images/{public}", {"user": "bob"}, ""),
        # update
        (INV, "PUT", "/private-images/{active}", {"json": update_body(osVersion=...)}, "osVersion"),
        (INV, "PUT", "/private-images/{active}", {"json": update_body(bootMode=...)}, "bootMode"),
        (INV, "PUT", "/private-images/{active}", {"json": update_body(diskFormat="raw")}, "diskFormat"),
        ("IMG.OperationFailed.ModifyMinDiskSize", "PUT", "/private-images/{active}",
         {"json": update_body(minDisk=5)}, "minDisk"),
        ("IMG.OperationDenied.ActionNotMatchStatus", "PUT", "/private-images/{saving}",
         {"json": update_body()}, "saving"),
        # upload-prepare / upload-done
        (INV, "POST", prepare, {"json": {}}, "size"),
        (INV, "POST", prepare, {"json": {"size": 0}}, "size"),
        (INV, "POST", prepare, {"json": {"size": "5"}}, "size"),
        ("IMG.OperationFailed.MinDiskSize", "POST", prepare, {"json": {"size": 2 * 1024**3}}, "minDisk"),
        ("IMG.OperationFailed.UploadNotAllowed", "POST", "/private-images/{active}/upload-prepare",
         {"json": {"size": 5}}, "active"),
        ("IMG.OperationFailed.UploadNotAllowed", "POST", "/private-images/{saving}/upload-prepare",
         {"json": {"size": 5}}, "saving"),
        (INV, "POST", "/private-images/{queued}/upload-done", {"json": {}}, "result"),
        (INV, "POST", "/private-images/{queued}/upload-done", {"json": {"result": "ok"}}, "result"),
        (INV, "POST", "/private-images/{queued}/upload-done",
         {"json": {"result": "success", "uploadId": 5}}, "uploadId"),
        ("IMG.OperationFailed.UploadNotAllowed", "POST", "/private-images/{queued}/upload-done",
         {"json": {"result": "success"}}, "upload-prepare"),
        ("IMG.OperationDenied.ActionNotMatchStatus", "POST", "/private-images/{active}/upload-done",
         {"json": {"result": "failed"}}, "active"),
        # download / delete
        ("IMG.OperationFailed.DownloadNotAllowed", "GET", "/private-images/{queued}/file", {}, "queued"),
        ("IMG.OperationFailed.DownloadNotAllowed", "GET", "/private-images/{saving}/file", {}, "saving"),
        ("IMG.OperationFailed.ImageIsShared", "DELETE", "/private-images/{shared}", {}, "shared"),
        ("IMG.OperationFailed.DeleteNotAllowed", "DELETE", "/private-images/{saving}", {}, "saving"),
        # share / unshare
        (INV, "POST", share, {"json": {}}, "shares"),
        (INV, "POST", share, {"json": {"shares": []}}, "shares"),
        (INV, "POST", share, {"json": {"shares": {}}}, "shares.user_ids"),
        (INV, "POST", share, {"json": {"shares": {"user_ids": []}}}, "shares.user_ids"),
        (INV, "POST", share, {"json": {"shares": {"user_ids": "x"}}}, "shares.user_ids"),
        (INV, "POST", share, {"json": {"shares": {"user_ids": [str(i) for i in range(51)]}}}, "shares.user_ids"),
        ("IMG.OperationFailed.DuplicateUserId", "POST", share,
         {"json": {"shares": {"user_ids": [carol["userId"], carol["userId"]]}}}, carol["userId"]),
        ("IMG.OperationFailed.InvalidUserId", "POST", share,
         {"json": {"shares": {"user_ids": ["1234"]}}}, "1234"),
        ("IMG.OperationFailed.InvalidUserId", "POST", share,
         {"json": {"shares": {"user_ids": [alice["userId"]]}}}, alice["userId"]),
        ("IMG.OperationFailed.AlreadyShared", "POST", share,
         {"json": {"shares": {"user_ids": [carol["userId"], bob["userId"]]}}}, bob["userId"]),
        ("IMG.OperationFailed.ActionNotMatch", "POST", "/private-images/{queued}/share",
         {"json": {"shares": {"user_ids": [bob["userId"]]}}}, "queued"),
        ("IMG.OperationFailed.ActionNotMatch", "POST", "/private-images/{public}/share",
         {"json": {"shares": {"user_ids": [bob["userId"]]}}}, "public"),
        ("IMG.OperationFailed.NotShared", "POST", "/private-images/{shared}/unshare",
         {"json": {"shares": {"user_ids": [carol["userId"]]}}}, carol["userId"]),
        ("IMG.OperationFailed.InvalidUserId", "POST", "/private-images/{shared}/unshare",
         {"json": {"shares": {"user_ids": ["999"]}}}, "999"),
        # shared images
        (INV, "DELETE", "/shared-images/nope", {"user": "bob"}, "shareImageId"),
        ("IMG.DBGet.NoData", "DELETE", "/shared-images/img-share-doesnotexist", {"user": "bob"}, ""),
        ("IMG.OperationDenied.Identity", "DELETE", "/shared-images/{share_id}", {"user": "carol"}, ""),
        (INV, "POST", "/shared-images/{share_id}/copy",
         {"user": "bob", "json": {**copy_body, "name": " x"}}, "name"),
        (INV, "POST", "/shared-images/{share_id}/copy",
         {"user": "bob", "json": {k: v for k, v in copy_body.items() if k != "resourceGroupId"}},
         "resourceGroupId"),
        ("IMG.OperationDenied.Identity", "POST", "/shared-images/{share_id}/copy",
         {"user": "bob", "json": {**copy_body, "tenantId": alice["tenantId"]}}, "tenantId"),
        ("IMG.OperationDenied.Identity", "POST", "/shared-images/{share_id}/copy",
         {"user": "carol", "json": {**copy_body, "tenantId": carol["tenantId"]}}, ""),
        # import
        (INV, "POST", "/private-images/import",
         {"json": {**ok_body, "osVersion": "v", "imageUrl": "file:///etc/passwd"}}, "imageUrl"),
        (INV, "POST", "/private-images/import", {"json": {**ok_body, "osVersion": "v"}}, "imageUrl"),
        (INV, "POST", "/private-images/import",
         {"json": {**ok_body, "imageUrl": "http://h/x"}}, "osVersion"),
        (INV, "POST", "/private-images/import",
         {"json": {**ok_body, "osVersion": "v", "imageUrl": "http://h/x", "visibility": "public"}},
         "visibility"),
        (INV, "POST", "/private-images/import",
         {"json": {**ok_body, "osVersion": "v", "imageUrl": "http://h/x",
                   "volumeImages": [{"imageUrl": "gopher://x"}]}}, "volumeImages[0].imageUrl"),
        # export
        (INV, "POST", "/custom-images/{active}/export", {"json": {}}, "bucket"),
        (INV, "POST", "/custom-images/{active}/export",
         {"json": {"bucket": {"name": "nope", "azId": "AZ0", "cellId": "region0"}}}, "bucket.name"),
        (INV, "POST", "/custom-images/{active}/export",
         {"json": {"bucket": {"name": "x", "azId": "AZ0"}}}, "bucket.cellId"),
    ]  # fmt: skip


async def test_every_error(api: Api, ims_emulator: EmulatorProcess) -> None:
    world = await make_world(api, ims_emulator)
    ids = vars(world)
    failures = []
    for code, method, template, kwargs, text in cases(ims_emulator):
        path = template.format(**ids)
        answer = await api.call(method, path, **kwargs)
        message = str(answer.body.get("message", "")) if isinstance(answer.body, dict) else ""
        if answer.status != 400 or answer.code != code or text not in message:
            failures.append((code, method, path, answer.status, answer.body))
        elif answer.headers.get("x-request-id") != answer.body["requestId"]:
            failures.append(("request id", method, path))
    assert not failures, "\n".join(map(repr, failures))


async def test_export_state_and_bucket_rules(api: Api) -> None:
    queued = (await api.create())["imageId"]
    buckets = await api.ok("GET", f"/private-images/{queued}/oss-bucket-list")
    await api.err(
        "IMG.OperationDenied.ActionNotMatchStatus",
        "POST",
        f"/custom-images/{queued}/export",
        json={"bucket": buckets[0]},
    )
    wrong_az = {**buckets[0], "azId": "AZ9"}
    message = await api.err(
        INV, "POST", f"/custom-images/{queued}/export", json={"bucket": wrong_az}
    )
    assert "bucket.azId" in message


async def test_deleted_image_is_gone(api: Api) -> None:
    image_id = (await api.create())["imageId"]
    await api.ok("DELETE", f"/private-images/{image_id}")
    for method, path in (
        ("GET", f"/images/{image_id}"),
        ("DELETE", f"/private-images/{image_id}"),
        ("GET", f"/private-images/{image_id}/file"),
    ):
        await api.err("IMG.DBGet.NoData", method, path)


async def test_valid_names_and_nested_body(api: Api, ims_emulator: EmulatorProcess) -> None:
    alice = ims_emulator.users["alice"]
    for name in ("测试 镜像-1.0_x", "a", "x" * 128):
        assert (await api.create(name=name))["name"] == name
    nested = {"image": create_body(alice, name="nested", osType="Linux")}
    image = await api.ok("POST", "/private-images", json=nested)
    assert image["name"] == "nested" and image["osType"] == "linux"


async def test_pagination_filter_order(api: Api, ims_emulator: EmulatorProcess) -> None:
    dave = {
        "token": "token-dave-errors", "userName": "dave-errors", "userId": "7000000000000000404",
        "tenantId": "7000000000000000004", "departmentId": "7000000000000000044",
    }  # fmt: skip
    await ims_emulator.aadmin("POST", "/_emulator/users", dave)
    api.users["dave"] = dave
    made = []
    for letter in "cadeb":
        made.append((await api.create(user="dave", name=f"page-{letter}"))["imageId"])
    made_other = (await api.create(user="dave", name="other"))["imageId"]

    async def page(path: str = "/private-images", **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = await api.ok("GET", path, user="dave", params=params)
        return result

    seen = []
    for current in (1, 2, 3, 4):
        data = await page(current=current, size=2)
        assert data["total"] == 6 and data["current"] == current and data["size"] == 2
        assert len(data["list"]) == (2 if current <= 3 else 0)
        seen += [item["imageId"] for item in data["list"]]
    assert sorted(seen) == sorted([*made, made_other])
    # default order: newest first
    assert seen == [made_other, *reversed(made)]

    data = await page(current=1, size=10, filter="name:lk:PAGE")
    assert data["total"] == 5
    data = await page(current=1, size=10, filter="name:lk:page-b")
    assert [i["name"] for i in data["list"]] == ["page-b"]
    data = await page(current=1, size=10, filter=f"name:lk:page|imageId:eq:{made[1]}|")
    assert [i["imageId"] for i in data["list"]] == [made[1]]
    data = await page(current=1, size=10, filter="imageId:eq:img-nothing|")
    assert data["total"] == 0 and data["list"] == []
    data = await page(current=1, size=10, filter="status:eq:queued|osType:eq:linux")
    assert data["total"] == 6

    data = await page(current=1, size=10, filter="name:lk:page", orderBy="name:asc")
    assert [i["name"] for i in data["list"]] == [f"page-{c}" for c in "abcde"]
    data = await page(current=1, size=10, filter="name:lk:page", orderBy="name:desc")
    assert [i["name"] for i in data["list"]] == [f"page-{c}" for c in "edcba"]
    data = await page(current=1, size=10, orderBy="createdAt:asc")
    assert [i["imageId"] for i in data["list"]] == [*made, made_other]

    # /images: public images of every tenant plus the caller's own
    public = (await api.create(name="everyone", visibility="public"))["imageId"]
    listed = await page("/images", current=1, size=100)
    ids = {item["imageId"] for item in listed["list"]}
    assert public in ids and set(made) <= ids
    assert public not in {i["imageId"] for i in (await page(current=1, size=100))["list"]}
    got = await api.ok("GET", f"/images/{public}", user="dave")
    assert got["visibility"] == "public"
