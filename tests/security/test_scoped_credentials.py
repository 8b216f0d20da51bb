"""The credentials of ``upload-prepare`` are scoped to their own bucket/key
(an STS session policy, as a real service hands out), and the S3 front never
forwards moto's own endpoints (docs/emulator.md, "The S3 front")."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import ThreadedEmulator
from security_support import (
    error_code,
    headers,
    ims,
    prepared_image,
    s3_client,
    status_of,
    target_client,
)

pytestmark = pytest.mark.timeout(180)

BODY = b"0123456789" * 100


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def denied(call: Awaitable[Any]) -> None:
    with pytest.raises(ClientError) as info:
        await call
    code = error_code(info.value)
    if info.value.operation_name == "HeadObject":
        code = "AccessDenied" if code == "403" else code  # a HEAD answer has no body
    assert (status_of(info.value), code) == (403, "AccessDenied"), info.value


async def uploaded(emu: ThreadedEmulator, http: aiohttp.ClientSession, who: str,
                   data: bytes = BODY) -> tuple[str, dict[str, Any]]:
    """An active image of *who* whose file was PUT with its own credentials."""
    user = emu.emu.users[who]
    image_id, target = await prepared_image(http, emu.url, user, len(data), name=f"{who}-img")
    async with target_client(target) as s3:
        await s3.put_object(Bucket=target["bucket"], Key=target["file"], Body=data)
    await ims(http, emu.url, "POST", f"/private-images/{image_id}/upload-done", user.token,
              {"result": "success"})
    with anyio.fail_after(60):
        while (await ims(http, emu.url, "GET", f"/images/{image_id}", user.token))[
            "status"
        ] != "active":
            await anyio.sleep(0.05)
    return image_id, target


async def test_upload_credentials_do_what_an_upload_needs(
    clean_emulator: ThreadedEmulator, http: aiohttp.ClientSession
) -> None:
    bob = clean_emulator.emu.users["bob"]
    image_id, target = await prepared_image(http, clean_emulator.url, bob, 2 * len(BODY))
    bucket, key = target["bucket"], target["file"]
    async with target_client(target) as s3:
        created = await s3.create_multipart_upload(Bucket=bucket, Key=key)
        upload_id = created["UploadId"]
        stray = (await s3.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
        listed = await s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
        assert {u["UploadId"] for u in listed["Uploads"]} == {upload_id, stray}
        await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=stray)
        part = await s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                                    Body=BODY + BODY)
        parts = await s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
        assert [p["PartNumber"] for p in parts["Parts"]] == [1]
        await s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )  # fmt: skip
        head = await s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == 2 * len(BODY)
        await s3.put_object(Bucket=bucket, Key=key, Body=BODY + BODY)  # single PUT too
    await ims(http, clean_emulator.url, "POST", f"/private-images/{image_id}/upload-done",
              bob.token, {"result": "success"})


async def test_upload_credentials_reach_nothing_else(
    clean_emulator: ThreadedEmulator, http: aiohttp.ClientSession
) -> None:
    emu = clean_emulator
    alice_id, alice_target = await uploaded(emu, http, "alice")
    alice_bucket, alice_key = alice_target["bucket"], alice_target["file"]
    _, target = await prepared_image(http, emu.url, emu.emu.users["bob"], len(BODY))
    bucket, key = target["bucket"], target["file"]
    assert bucket != alice_bucket
    async with target_client(target) as s3:
        upload_id = (await s3.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: s3.list_buckets(),
            lambda: s3.list_objects_v2(Bucket=bucket),
            lambda: s3.list_objects(Bucket=bucket),
            lambda: s3.list_objects_v2(Bucket=alice_bucket),
            lambda: s3.get_object(Bucket=bucket, Key=key),  # downloads go through the IMS API
            lambda: s3.get_object(Bucket=alice_bucket, Key=alice_key),
            lambda: s3.head_object(Bucket=alice_bucket, Key=alice_key),
            lambda: s3.put_object(Bucket=alice_bucket, Key=alice_key, Body=b"overwritten"),
            lambda: s3.delete_object(Bucket=alice_bucket, Key=alice_key),
            lambda: s3.delete_object(Bucket=bucket, Key=key),
            lambda: s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}]}),
            lambda: s3.put_object(Bucket=bucket, Key=key + "-other", Body=b"x"),
            lambda: s3.put_object(Bucket=bucket, Key="img-aaaaaaaaaaaaaa", Body=b"x"),
            lambda: s3.create_multipart_upload(Bucket=alice_bucket, Key=alice_key),
            lambda: s3.create_multipart_upload(Bucket=bucket, Key=key + "/x"),
            lambda: s3.copy_object(Bucket=bucket, Key=key,
                           CopySource={"Bucket": alice_bucket, "Key": alice_key}),
            lambda: s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                                CopySource={"Bucket": alice_bucket, "Key": alice_key}),
            lambda: s3.put_object_tagging(Bucket=bucket, Key=key,
                                  Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
            lambda: s3.get_object_tagging(Bucket=bucket, Key=key),
            lambda: s3.put_object_acl(Bucket=bucket, Key=key, ACL="public-read"),
            lambda: s3.list_multipart_uploads(Bucket=bucket),  # only with prefix = the key
            lambda: s3.list_multipart_uploads(Bucket=bucket, Prefix=""),
            lambda: s3.list_multipart_uploads(Bucket=bucket, Prefix="img-"),
            lambda: s3.list_multipart_uploads(Bucket=alice_bucket, Prefix=alice_key),
            lambda: s3.list_parts(Bucket=alice_bucket, Key=alice_key, UploadId=upload_id),
            lambda: s3.create_bucket(Bucket="sec-new-bucket"),
            lambda: s3.delete_bucket(Bucket=bucket),
            lambda: s3.get_bucket_location(Bucket=bucket),
            lambda: s3.put_bucket_policy(Bucket=bucket, Policy="{}"),
        ]
        for attempt in attempts:
            await denied(attempt())
    # nothing of alice's changed, and nothing was written
    storage = emu.emu.storage
    assert storage is not None
    checksum, size = await emu.acall(storage.md5(alice_bucket, alice_key))
    assert (checksum, size) == (hashlib.md5(BODY).hexdigest(), len(BODY))
    assert await emu.acall(storage.head(bucket, key + "-other")) is None
    denials = emu.emu.front.stats.rejected["AccessDenied"]  # type: ignore[union-attr]
    assert denials >= len(attempts)
    downloaded = await ims_download(http, emu.url, alice_id, emu.emu.users["alice"].token)
    assert downloaded == BODY


async def ims_download(http: aiohttp.ClientSession, url: str, image_id: str,
                       token: str) -> bytes:
    async with http.get(f"{url}/api/image/v1/private-images/{image_id}/file",
                        headers=headers(token)) as answer:
        assert answer.status == 200
        return await answer.read()


def signed(method: str, url: str, access_key: str, secret_key: str,
           token: str | None) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=b"")
    S3SigV4Auth(Credentials(access_key, secret_key, token), "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("path", ["/moto-api/reset", "//moto-api/reset", "/%6Doto-api/reset",
                                  "/moto-api/data.json", "/moto-api/"])
async def test_moto_endpoints_are_never_forwarded(
    clean_emulator: ThreadedEmulator, http: aiohttp.ClientSession, path: str
) -> None:
    emu = clean_emulator
    _, alice_target = await uploaded(emu, http, "alice")
    front = emu.emu.front
    assert front is not None
    _, bob_target = await prepared_image(http, emu.url, emu.emu.users["bob"], len(BODY))
    unscoped = front.issue_credentials(lifetime=60)  # admin credentials: still refused
    for access, secret, token in (
        (bob_target["accessKey"], bob_target["secretKey"], bob_target["token"]),
        (unscoped.access_key, unscoped.secret_key, unscoped.token),
    ):
        for method in ("POST", "GET"):
            url = front.url + path
            async with http.request(method, url, headers=signed(method, url, access, secret,
                                                                 token)) as answer:
                body = await answer.text()
                assert answer.status == 403, body
                assert "<Code>AccessDenied</Code>" in body
    storage = emu.emu.storage
    assert storage is not None
    size = await emu.acall(storage.head(alice_target["bucket"], alice_target["file"]))
    assert size == len(BODY)


async def test_emulator_flows_use_admin_handles(
    clean_emulator: ThreadedEmulator, http: aiohttp.ClientSession
) -> None:
    """Export, share + copy and download keep working: they use the emulator's
    own S3 client, not upload credentials."""
    emu = clean_emulator
    alice, bob = emu.emu.users["alice"], emu.emu.users["bob"]
    image_id, _ = await uploaded(emu, http, "alice")
    assert await ims_download(http, emu.url, image_id, alice.token) == BODY
    buckets = await ims(http, emu.url, "GET", f"/private-images/{image_id}/oss-bucket-list",
                        alice.token)
    await ims(http, emu.url, "POST", f"/custom-images/{image_id}/export", alice.token,
              {"bucket": buckets[0]})
    storage = emu.emu.storage
    assert storage is not None
    exported = await emu.acall(storage.head(buckets[0]["name"], f"{image_id}.raw"))
    assert exported == len(BODY)
    await ims(http, emu.url, "POST", f"/private-images/{image_id}/share", alice.token,
              {"shares": {"user_ids": [bob.user_id]}})
    shared = await ims(http, emu.url, "GET", "/shared-images?current=1&size=10", bob.token)
    share_id = shared["list"][0]["shareId"]
    copy = await ims(http, emu.url, "POST", f"/shared-images/{share_id}/copy", bob.token,
                     {"tenantId": bob.tenant_id, "departmentId": bob.department_id,
                      "resourceGroupId": "", "name": "bobs copy"})
    copy_id = copy["imageId"]
    with anyio.fail_after(60):
        while (await ims(http, emu.url, "GET", f"/images/{copy_id}", bob.token))[
            "status"
        ] != "active":
            await anyio.sleep(0.05)
    assert await ims_download(http, emu.url, copy_id, bob.token) == BODY


async def test_unscoped_credentials_keep_working_for_admin_use(
    clean_emulator: ThreadedEmulator,
) -> None:
    front = clean_emulator.emu.front
    assert front is not None
    creds = front.issue_credentials(lifetime=60)
    assert creds.scope is None
    async with s3_client(front.url, creds.access_key, creds.secret_key, creds.token) as s3:
        names = [b["Name"] for b in (await s3.list_buckets()).get("Buckets", [])]
    assert isinstance(names, list)


async def test_upload_ids_of_other_keys_are_refused(
    clean_emulator: ThreadedEmulator, http: aiohttp.ClientSession
) -> None:
    """moto binds an upload id to no key; the front does, as S3 does: the
    credentials of image A cannot touch image B's upload (same tenant bucket)."""
    bob = clean_emulator.emu.users["bob"]
    _, first = await prepared_image(http, clean_emulator.url, bob, 10, name="a")
    _, second = await prepared_image(http, clean_emulator.url, bob, 10, name="b")
    assert first["bucket"] == second["bucket"] and first["file"] != second["file"]
    async with target_client(second) as s3:
        theirs = (await s3.create_multipart_upload(Bucket=second["bucket"],
                                                   Key=second["file"]))["UploadId"]
    async with target_client(first) as s3:
        mine = (await s3.create_multipart_upload(Bucket=first["bucket"],
                                                 Key=first["file"]))["UploadId"]
        own = {"Bucket": first["bucket"], "Key": first["file"]}
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: s3.upload_part(**own, UploadId=theirs, PartNumber=1, Body=b"x" * 10),
            lambda: s3.list_parts(**own, UploadId=theirs),
            lambda: s3.abort_multipart_upload(**own, UploadId=theirs),
            lambda: s3.complete_multipart_upload(
                **own, UploadId=theirs, MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                     "ETag": '"x"'}]}),
        ]
        for call in calls:
            with pytest.raises(ClientError) as info:
                await call()
            assert (status_of(info.value), error_code(info.value)) == (404, "NoSuchUpload")
        part = await s3.upload_part(**own, UploadId=mine, PartNumber=1, Body=b"y" * 10)
        await s3.complete_multipart_upload(
            **own, UploadId=mine,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})  # fmt: skip
    storage = clean_emulator.emu.storage
    assert storage is not None
    client: Any = storage.client
    listed = await clean_emulator.acall(
        client.list_multipart_uploads(Bucket=second["bucket"], Prefix=second["file"]))
    assert [u["UploadId"] for u in listed["Uploads"]] == [theirs]  # untouched
