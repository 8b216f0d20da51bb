"""Helpers of the emulator end-to-end tests (this module holds no tests).

The tests talk to the emulator over real HTTP with plain aiohttp, and to its
S3 server with an independent client (sync boto3, run in a worker thread).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import aiohttp
import anyio
import attrs

REGION = "region0"
MIB = 1024 * 1024


@attrs.define
class Answer:
    status: int
    body: Any
    headers: Any

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None


def create_body(user: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "diskFormat": "qcow2",
        "minDisk": 10,
        "minRam": 512,
        "name": "centos8.2",
        "imageType": "os_image",
        "instruction": "64-bits",
        "cpuArch": "x86",
        "osType": "linux",
        "platform": "CentOS",
        "visibility": "private",
        "usage": "ecs",
        "departmentId": user["departmentId"],
        "resourceGroupId": "",
        "tenantId": user["tenantId"],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def update_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bootMode": "UEFI",
        "cpuArch": "arm",
        "diskFormat": "qcow2",
        "instruction": "64-bits",
        "minDisk": 20,
        "minRam": 1024,
        "name": "renamed",
        "osType": "linux",
        "osVersion": "kylin-v10-sp3",
        "platform": "kylin",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


class Api:
    """Raw HTTP calls to the emulator as one of its users."""

    def __init__(self, http: aiohttp.ClientSession, url: str, users: dict[str, dict[str, str]]):
        self.http = http
        self.url = url.rstrip("/")
        self.base = self.url + "/api/image/v1"
        self.users = users

    def headers(self, user: str | None, region: str | None = REGION) -> dict[str, str]:
        out = {}
        if user is not None:
            out["Authorization"] = f"Bearer {self.users[user]['token']}"
        if region is not None:
            out["x-regionid"] = region
        return out

    async def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = "alice",
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        region: str | None = REGION,
    ) -> Answer:
        all_headers = self.headers(user, region)
        all_headers.update(headers or {})
        async with self.http.request(
            method, self.base + path, json=json, params=params, headers=all_headers, data=data
        ) as answer:
            raw = await answer.read()
            try:
                import json as _json

                body: Any = _json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return Answer(answer.status, body, answer.headers)

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        answer = await self.call(method, path, **kw)
        assert answer.status == 200 and answer.code == "Success", (method, path, answer.body)
        assert answer.body["message"] == "调用成功"
        assert answer.headers["x-request-id"] == answer.body["requestId"]
        return answer.data

    async def err(self, code: str, method: str, path: str, **kw: Any) -> str:
        answer = await self.call(method, path, **kw)
        assert answer.status == 400, (method, path, answer.status, answer.body)
        assert answer.code == code, (method, path, answer.body)
        assert answer.data is None
        return str(answer.body["message"])

    async def create(self, user: str = "alice", **overrides: Any) -> dict[str, Any]:
        body = create_body(self.users[user], **overrides)
        return await self.ok("POST", "/private-images", user=user, json=body)

    async def image(self, image_id: str, user: str = "alice") -> dict[str, Any]:
        return await self.ok("GET", f"/images/{image_id}", user=user)

    async def wait(
        self, image_id: str, user: str = "alice", timeout: float = 15.0
    ) -> dict[str, Any]:
        """Poll until the image leaves ``saving``."""
        deadline = time.monotonic() + timeout
        while True:
            image = await self.image(image_id, user)
            if image["status"] not in ("saving",):
                return image
            assert time.monotonic() < deadline, f"{image_id} still saving"
            await anyio.sleep(0.05)

    async def upload(
        self,
        image_id: str,
        data: bytes,
        *,
        user: str = "alice",
        multipart: bool = False,
        declared: int | None = None,
    ) -> dict[str, Any]:
        """prepare -> put through ``domain`` with boto3 -> upload-done -> wait."""
        size = len(data) if declared is None else declared
        target = await self.ok(
            "POST", f"/private-images/{image_id}/upload-prepare", user=user, json={"size": size}
        )
        upload_id = await anyio.to_thread.run_sync(put_object, target, data, multipart)
        await self.ok(
            "POST",
            f"/private-images/{image_id}/upload-done",
            user=user,
            json={"result": "success", "uploadId": upload_id},
        )
        return await self.wait(image_id, user)


def s3_client(target: dict[str, Any]) -> Any:
    """An independent boto3 client with the credentials upload-prepare gave."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=target["domain"],
        aws_access_key_id=target["accessKey"],
        aws_secret_access_key=target["secretKey"],
        aws_session_token=target["token"] or None,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"total_max_attempts": 1, "mode": "standard"},
        ),
    )


def put_object(target: dict[str, Any], data: bytes, multipart: bool, part: int = 5 * MIB) -> str:
    """Store *data* at the target (sync); returns the multipart upload id or ``""``."""
    client = s3_client(target)
    bucket, key = target["bucket"], target["file"]
    if not multipart:
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return ""
    upload_id: str = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), part), start=1):
        answer = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
            Body=data[start : start + part],
        )  # fmt: skip
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    return upload_id


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic, non-repeating-ish bytes."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]
