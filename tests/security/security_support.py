"""Helpers of the security tests (this module holds no tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

REGION = "region0"


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "x-regionid": REGION}


def create_body(user: Any, name: str = "sec", **extra: Any) -> dict[str, Any]:
    return {
        "diskFormat": "raw", "minDisk": 1, "minRam": 512, "name": name,
        "imageType": "os_image", "instruction": "64-bits", "cpuArch": "x86",
        "osType": "linux", "platform": "CentOS", "visibility": "private", "usage": "ecs",
        "departmentId": user.department_id, "resourceGroupId": "", "tenantId": user.tenant_id,
        **extra,
    }  # fmt: skip


async def ims(http: aiohttp.ClientSession, url: str, method: str, path: str, token: str,
              body: Any = None) -> Any:
    """One IMS API call; the envelope's ``data`` (asserts ``Success``)."""
    async with http.request(method, f"{url}/api/image/v1{path}", json=body,
                            headers=headers(token)) as answer:
        envelope = await answer.json()
    assert envelope["code"] == "Success", envelope
    return envelope["data"]


async def prepared_image(http: aiohttp.ClientSession, url: str, user: Any, size: int,
                         name: str = "sec") -> tuple[str, dict[str, Any]]:
    """A queued image of *user* and its upload-prepare answer."""
    image = await ims(http, url, "POST", "/private-images", user.token, create_body(user, name))
    target = await ims(http, url, "POST", f"/private-images/{image['imageId']}/upload-prepare",
                       user.token, {"size": size})
    return image["imageId"], target


@contextlib.asynccontextmanager
async def s3_client(endpoint: str, access_key: str, secret_key: str,
                    token: str | None = None) -> AsyncIterator[Any]:
    config = AioConfig(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    async with get_session().create_client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, aws_session_token=token or None,
        region_name="us-east-1", config=config,
    ) as client:  # fmt: skip
        yield client


def target_client(target: dict[str, Any]) -> Any:
    """An S3 client with the credentials of an upload-prepare answer."""
    return s3_client(target["domain"], target["accessKey"], target["secretKey"], target["token"])


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def status_of(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
