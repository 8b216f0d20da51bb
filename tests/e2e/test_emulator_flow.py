"""The emulator end to end over real HTTP: upload (single and multipart
through the S3 front), verification, download with ranges, sharing, copy,
import, export, delete."""



from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from test_emulator_support import MIB, Api, md5, payload, put_object, s3_client

from aioims.testing import EmulatorProcess, ims_emulator  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def api(ims_emulator: EmulatorProcess) -> AsyncIterator[Api]:
    await ims_emulator.aadmin("DELETE", "/_emulator/faults")
    async with aiohttp.ClientSession() as http:
        yield Api(http, ims_emulator.url, ims_emulator.users)


def direct_s3(emulator: EmulatorProcess) -> Any:
    """boto3 straight on the emulator's S3 server (not through the front)."""
    endpoint = emulator.state()["s3Endpoint"]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


async def test_upload_download_share_copy_delete(api: Api, ims_emulator: EmulatorProcess) -> None:
    alice, bob = ims_emulator.users["alice"], ims_emulator.users["bob"]
    image = await api.create(description="测试镜像", imageTags=[{"key": "k", "value": "v"}])
    image_id = image["imageId"]
    assert image_id.startswith("img-") and len(image_id) == 18
    assert image["status"] == "queued"
    assert image["progress"] == "0%"
    assert image["owner"] == alice["tenantId"]
    assert image["tenantName"] == "tenant-alice"
    assert image["region"] == "region0"
    assert image["describe"] == "测试镜像"
    assert image["instructions"] == "64-bits"
    assert image["imageTags"] == [{"key": "k", "value": "v"}]
    assert image["bootMode"] == "BIOS"
    assert isinstance(image["id"], int)

    data = payload(6 * MIB + 123)
    target = await api.ok(
        "POST", f"/private-images/{image_id}/upload-prepare", json={"size": len(data)}
    )
    assert set(target) == {
        "image_url",
        "accessKey",
        "secretKey",
        "token",
        "bucket",
        "file",
        "domain",
    }
    assert target["file"] == image_id
    assert target["bucket"].startswith("iaas-image-") and len(target["bucket"]) == 43
    assert target["token"]  # temporary credentials of the S3 front
    assert target["domain"] != ims_emulator.state()["s3Endpoint"]
    upload_id = await anyio.to_thread.run_sync(put_object, target, data, True)
    assert upload_id
    await api.ok(
        "POST",
        f"/private-images/{image_id}/upload-done",
        json={"result": "success", "uploadId": upload_id},
    )
    # a retried upload-done is harmless
    await api.ok("POST", f"/private-images/{image_id}/upload-done", json={"result": "success"})
    image = await api.wait(image_id)
    assert image["status"] == "active", image
    assert image["checksum"] == md5(data)
    assert image["size"] == len(data)
    assert image["progress"] == "100"
    assert image["uploadId"] == upload_id

    # download: whole file, then ranges
    async with api.http.get(
        f"{api.base}/private-images/{image_id}/file", headers=api.headers("alice")
    ) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Length"] == str(len(data))
        assert answer.headers["ETag"] == f'"{md5(data)}"'
        assert base64.b64decode(answer.headers["Content-MD5"]).hex() == md5(data)
        assert answer.headers["x-request-id"]
        assert await answer.read() == data
    for spec, first, last in (("bytes=100-199", 100, 199), ("bytes=-10", len(data) - 10, None)):
        async with api.http.get(
            f"{api.base}/private-images/{image_id}/file",
            headers={**api.headers("alice"), "Range": spec},
        ) as answer:
            assert answer.status == 206
            end = len(data) - 1 if last is None else last
            assert answer.headers["Content-Range"] == f"bytes {first}-{end}/{len(data)}"
            assert await answer.read() == data[first : end + 1]
    async with api.http.get(
        f"{api.base}/private-images/{image_id}/file",
        headers={**api.headers("alice"), "Range": f"bytes={len(data)}-"},
    ) as answer:
        assert answer.status == 416
        assert answer.headers["Content-Range"] == f"bytes */{len(data)}"
    async with api.http.head(
        f"{api.base}/private-images/{image_id}/file", headers=api.headers("alice")
    ) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Length"] == str(len(data))
        assert answer.headers["ETag"] == f'"{md5(data)}"'

    # share with bob
    await api.ok(
        "POST",
        f"/private-images/{image_id}/share",
        params={"requestInfo": "region0"},
        json={"shares": {"user_ids": [bob["userId"]]}},
    )
    shares = await api.ok(
        "GET", f"/private-images/{image_id}/share", params={"current": 1, "size": 10}
    )
    assert shares["total"] == 1
    (share,) = shares["list"]
    assert share["userId"] == bob["userId"] and share["userName"] == "bob"
    assert share["image"] is None and share["imageId"] == image_id
    assert share["shareId"].startswith("img-share-")
    assert (await api.image(image_id))["shared"] is True

    shared = await api.ok(
        "GET",
        "/shared-images",
        user="bob",
        params={"current": 1, "size": 10, "orderBy": "createdAt:desc", "requestInfo": "region0"},
    )
    assert [s["shareId"] for s in shared["list"]] == [share["shareId"]]
    assert shared["list"][0]["image"]["checksum"] == md5(data)
    assert shared["list"][0]["image"]["owner"] == alice["tenantId"]
    assert (await api.image(image_id, user="bob"))["imageId"] == image_id

    # bob copies it into his tenant
    copy = await api.ok(
        "POST",
        f"/shared-images/{share['shareId']}/copy",
        user="bob",
        json={
            "tenantId": bob["tenantId"],
            "departmentId": bob["departmentId"],
            "resourceGroupId": "",
            "name": "副本",
            "description": "a copy",
        },
    )
    assert copy["status"] == "saving" and copy["owner"] == bob["tenantId"]
    copied = await api.wait(copy["imageId"], user="bob")
    assert copied["status"] == "active"
    assert copied["checksum"] == md5(data) and copied["size"] == len(data)
    async with api.http.get(
        f"{api.base}/private-images/{copy['imageId']}/file", headers=api.headers("bob")
    ) as answer:
        assert await answer.read() == data

    # a shared image cannot be deleted
    await api.err("IMG.OperationFailed.ImageIsShared", "DELETE", f"/private-images/{image_id}")
    # bob drops the share; then alice may delete
    await api.ok(
        "DELETE", f"/shared-images/{share['shareId']}", user="bob", params={"requestInfo": "r"}
    )
    shared = await api.ok("GET", "/shared-images", user="bob", params={"current": 1, "size": 10})
    assert shared["total"] == 0
    await api.ok("DELETE", f"/private-images/{image_id}")
    await api.err("IMG.DBGet.NoData", "GET", f"/images/{image_id}")
    listed = await api.ok(
        "GET",
        "/private-images",
        params={"current": 1, "size": 100, "filter": f"imageId:eq:{image_id}"},
    )
    assert listed["total"] == 0
    # bob's copy lives on
    assert (await api.image(copy["imageId"], user="bob"))["status"] == "active"


async def test_unshare(api: Api, ims_emulator: EmulatorProcess) -> None:
    carol = ims_emulator.users["carol"]
    image_id = (await api.create())["imageId"]
    assert (await api.upload(image_id, b"hello world"))["status"] == "active"
    ids = {"shares": {"user_ids": [carol["userId"]]}}
    await api.ok("POST", f"/private-images/{image_id}/share", json=ids)
    await api.ok("POST", f"/private-images/{image_id}/unshare", json=ids)
    await api.err(
        "IMG.OperationFailed.NotShared", "POST", f"/private-images/{image_id}/unshare", json=ids
    )
    page = await api.ok(
        "GET", f"/private-images/{image_id}/share", params={"current": 1, "size": 5}
    )
    assert page["total"] == 0
    assert (await api.image(image_id))["shared"] is False
    await api.ok("DELETE", f"/private-images/{image_id}")


async def test_size_mismatch_kills_then_retry(api: Api) -> None:
    image_id = (await api.create())["imageId"]
    image = await api.upload(image_id, b"x" * 50, declared=100)
    assert image["status"] == "killed"
    assert image["errMessage"].startswith("IMG.OperationFailed.ImageSize")
    # killed -> upload-prepare again (a retry) -> active
    image = await api.upload(image_id, b"y" * 100)
    assert image["status"] == "active" and image["errMessage"] == ""
    assert image["checksum"] == md5(b"y" * 100)


async def test_done_without_file_kills(api: Api) -> None:
    image_id = (await api.create())["imageId"]
    await api.ok("POST", f"/private-images/{image_id}/upload-prepare", json={"size": 10})
    await api.ok("POST", f"/private-images/{image_id}/upload-done", json={"result": "success"})
    image = await api.wait(image_id)
    assert image["status"] == "killed"
    assert image["errMessage"].startswith("IMG.OperationFailed.UploadError")


async def test_failed_upload_kills_and_aborts(api: Api) -> None:
    image_id = (await api.create())["imageId"]
    target = await api.ok(
        "POST", f"/private-images/{image_id}/upload-prepare", json={"size": 6 * MIB}
    )

    def start_upload() -> str:
        client = s3_client(target)
        upload = client.create_multipart_upload(Bucket=target["bucket"], Key=target["file"])
        client.upload_part(
            Bucket=target["bucket"], Key=target["file"], UploadId=upload["UploadId"],
            PartNumber=1, Body=b"z" * (5 * MIB),
        )  # fmt: skip
        return str(upload["UploadId"])

    upload_id = await anyio.to_thread.run_sync(start_upload)
    await api.ok(
        "POST",
        f"/private-images/{image_id}/upload-done",
        json={"result": "failed", "uploadId": upload_id},
    )
    image = await api.image(image_id)
    assert image["status"] == "killed"
    assert image["errMessage"].startswith("IMG.OperationFailed.UploadError")

    def parts_gone() -> bool:
        try:
            s3_client(target).list_parts(
                Bucket=target["bucket"], Key=target["file"], UploadId=upload_id
            )
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "NoSuchUpload"
        return False

    assert await anyio.to_thread.run_sync(parts_gone)


@pytest.fixture
async def file_server() -> AsyncIterator[tuple[str, bytes]]:
    data = payload(9 * MIB + 7, seed=3)

    async def serve(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse()  # chunked: no Content-Length
        await answer.prepare(request)
        for start in range(0, len(data), 256 * 1024):
            await answer.write(data[start : start + 256 * 1024])
        await answer.write_eof()
        return answer

    app = web.Application()
    app.router.add_get("/disk.qcow2", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", data
    finally:
        await runner.cleanup()


def import_body(user: dict[str, str], url: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "departmentId": user["departmentId"],
        "resourceGroupId": "",
        "name": "导入镜像",
        "minDisk": 10,
        "minRam": 1024,
        "cpuArch": "x86",
        "diskFormat": "qcow2",
        "osType": "linux",
        "usage": "ecs",
        "platform": "CCLinux",
        "instruction": "32-bits",
        "imageSource": 1,
        "imageUrl": url,
        "tenantId": user["tenantId"],
        "region": "region0",
        "visibility": "private",
        "osVersion": "v2",
    }
    body.update(overrides)
    return body


async def test_import(
    api: Api, ims_emulator: EmulatorProcess, file_server: tuple[str, bytes]
) -> None:
    base, data = file_server
    alice = ims_emulator.users["alice"]
    image = await api.ok(
        "POST", "/private-images/import", json=import_body(alice, f"{base}/disk.qcow2")
    )
    assert image["status"] == "saving" and image["sourceType"] == "import"
    image = await api.wait(image["imageId"])
    assert image["status"] == "active", image
    assert image["checksum"] == md5(data) and image["size"] == len(data)

    missing = await api.ok(
        "POST", "/private-images/import", json=import_body(alice, f"{base}/nope")
    )
    missing = await api.wait(missing["imageId"])
    assert missing["status"] == "killed" and "HTTP 404" in missing["errMessage"]

    message = await api.err(
        "IMG.InvalidParameter",
        "POST",
        "/private-images/import",
        json=import_body(alice, "ftp://example.com/disk.qcow2"),
    )
    assert "imageUrl" in message


async def test_export(api: Api, ims_emulator: EmulatorProcess) -> None:
    data = payload(3000, seed=5)
    image_id = (await api.create())["imageId"]
    assert (await api.upload(image_id, data))["status"] == "active"
    buckets = await api.ok("GET", f"/private-images/{image_id}/oss-bucket-list")
    assert len(buckets) == 2
    assert all(set(b) == {"azId", "cellId", "name"} for b in buckets)
    chosen = buckets[1]
    await api.ok("POST", f"/custom-images/{image_id}/export", json={"bucket": chosen})

    def fetch() -> bytes:
        s3 = direct_s3(ims_emulator)
        return bytes(s3.get_object(Bucket=chosen["name"], Key=f"{image_id}.qcow2")["Body"].read())

    assert await anyio.to_thread.run_sync(fetch) == data
