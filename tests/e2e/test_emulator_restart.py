"""The in-process :class:`Emulator`: persistence across restarts, the
lost-file behaviour of the embedded S3, external S3 without the front,
internal errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from test_emulator_support import Api, md5, put_object

from aioims.emulator import Emulator

pytestmark = pytest.mark.timeout(120)


def users_of(emulator: Emulator) -> dict[str, dict[str, str]]:
    return {
        name: {
            "token": u.token,
            "userId": u.user_id,
            "tenantId": u.tenant_id,
            "departmentId": u.department_id,
        }
        for name, u in emulator.users.items()
    }


async def snapshot(api: Api) -> dict[str, Any]:
    images = await api.ok("GET", "/private-images", params={"current": 1, "size": 100})
    shared = await api.ok("GET", "/shared-images", user="bob", params={"current": 1, "size": 100})
    return {"images": images, "shared": shared}


async def test_restart_keeps_records_external_s3(tmp_path: Path, s3_url: str) -> None:
    data = b"persistent bytes" * 1000
    async with Emulator(tmp_path, s3_endpoint=s3_url) as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu.url, users_of(emu))
        image_id = (await api.create(name="keep me"))["imageId"]
        assert (await api.upload(image_id, data))["status"] == "active"
        bob = emu.users["bob"]
        await api.ok(
            "POST",
            f"/private-images/{image_id}/share",
            json={"shares": {"user_ids": [bob.user_id]}},
        )
        queued = (await api.create(name="waiting"))["imageId"]
        before = await snapshot(api)
        first_url = emu.url

    async with Emulator(tmp_path, s3_endpoint=s3_url) as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu.url, users_of(emu))
        after = await snapshot(api)
        assert after == before
        assert {i["imageId"] for i in after["images"]["list"]} >= {image_id, queued}
        assert after["shared"]["list"][0]["image"]["imageId"] == image_id
        async with http.get(
            f"{api.base}/private-images/{image_id}/file", headers=api.headers("alice")
        ) as answer:
            assert answer.status == 200 and await answer.read() == data
        assert emu.lost == set()
        # new ids keep counting up
        newer = await api.create(name="after restart")
        assert newer["id"] > max(i["id"] for i in before["images"]["list"])
    assert first_url  # the port may differ between runs


async def test_restart_with_embedded_s3_reports_lost_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Emulator(tmp_path) as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu.url, users_of(emu))
        image_id = (await api.create())["imageId"]
        assert (await api.upload(image_id, b"will be lost"))["status"] == "active"
        queued = (await api.create())["imageId"]

    async with Emulator(tmp_path) as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu.url, users_of(emu))
        assert emu.lost == {image_id}
        assert "lost their file" in caplog.text
        image = await api.image(image_id)
        assert image["status"] == "active"  # the record is kept
        assert "lost" in image["errMessage"]
        message = await api.err(
            "IMG.OperationFailed.DownloadNotAllowed", "GET", f"/private-images/{image_id}/file"
        )
        assert "lost" in message
        buckets = await api.ok("GET", f"/private-images/{image_id}/oss-bucket-list")
        await api.err(
            "IMG.OperationFailed.DownloadNotAllowed",
            "POST",
            f"/custom-images/{image_id}/export",
            json={"bucket": buckets[0]},
        )
        # the queued image can still be uploaded (buckets are made on demand)
        assert (await api.upload(queued, b"fresh"))["checksum"] == md5(b"fresh")


async def test_saving_is_resumed_after_restart(tmp_path: Path, s3_url: str) -> None:
    async with Emulator(tmp_path, s3_endpoint=s3_url) as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu.url, users_of(emu))
        image_id = (await api.create())["imageId"]
        target = await api.ok(
            "POST", f"/private-images/{image_id}/upload-prepare", json={"size": 4}
        )
        await anyio.to_thread.run_sync(put_object, target, b"abcd", False)
        emu.faults.configure({"activate_delay": 60})
        await api.ok("POST", f"/private-images/{image_id}/upload-done", json={"result": "success"})
        assert (await api.image(image_id))["status"] == "saving"

    async with Emulator(tmp_path, s3_endpoint=s3_url) as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu.url, users_of(emu))
        image = await api.wait(image_id)
        assert image["status"] == "active" and image["checksum"] == md5(b"abcd")


async def test_without_front_hands_out_the_s3_server(tmp_path: Path, s3_url: str) -> None:
    emulator = Emulator(tmp_path, s3_endpoint=s3_url, s3_front=False)
    async with emulator as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu.url, users_of(emu))
        image_id = (await api.create())["imageId"]
        target = await api.ok(
            "POST", f"/private-images/{image_id}/upload-prepare", json={"size": 3}
        )
        assert target["domain"] == s3_url
        keys = (target["accessKey"], target["secretKey"], target["token"])
        assert keys == ("testing", "testing", "")
        await anyio.to_thread.run_sync(put_object, target, b"abc", False)
        await api.ok("POST", f"/private-images/{image_id}/upload-done", json={"result": "success"})
        await emu.wait_idle()
        assert (await api.image(image_id))["status"] == "active"


async def test_unexpected_exception_is_an_internal_error(tmp_path: Path, s3_url: str) -> None:
    async with Emulator(tmp_path, s3_endpoint=s3_url, s3_front=False) as emu:
        assert emu.services is not None

        async def broken(image_id: str) -> None:
            raise RuntimeError("disk on fire")

        emu.services.store.get_image = broken  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as http:
            api = Api(http, emu.url, users_of(emu))
            message = await api.err("IMG.Internal.Error", "GET", "/images/img-abcdefabcdefab")
            assert "disk on fire" in message
            # the emulator keeps serving
            await api.ok("GET", "/private-images", params={"current": 1, "size": 1})

            async def locked(image_id: str) -> None:
                raise sqlite3.OperationalError("database is locked")

            emu.services.store.get_image = locked  # type: ignore[method-assign]
            await api.err("IMG.DBGet.Fail", "GET", "/images/img-abcdefabcdefab")
            await api.err("IMG.DBUpdate.Fail", "DELETE", "/private-images/img-abcdefabcdefab")
