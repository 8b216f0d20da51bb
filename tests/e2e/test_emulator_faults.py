"""Fault injection: the IMS-side admin API and the S3 front's faults through
``/_emulator/s3-faults``."""



from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from botocore.exceptions import ClientError
from test_emulator_support import MIB, Api, payload, put_object, s3_client

from aioims.testing import EmulatorProcess, ims_emulator  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def api(ims_emulator: EmulatorProcess) -> AsyncIterator[Api]:
    await ims_emulator.aadmin("DELETE", "/_emulator/faults")
    await ims_emulator.aadmin("DELETE", "/_emulator/s3-faults")
    async with aiohttp.ClientSession() as http:
        yield Api(http, ims_emulator.url, ims_emulator.users)
    await ims_emulator.aadmin("DELETE", "/_emulator/faults")
    await ims_emulator.aadmin("DELETE", "/_emulator/s3-faults")
    await ims_emulator.aadmin("POST", "/_emulator/s3-faults", {"credential_lifetime": 3600})


async def test_scripted_error_then_success(api: Api, ims_emulator: EmulatorProcess) -> None:
    image_id = (await api.create())["imageId"]
    await ims_emulator.aadmin(
        "POST",
        "/_emulator/faults",
        {"rules": [{"endpoint": "get_image", "error": {"code": "IMG.Internal.Error"}, "times": 2}]},
    )
    for _ in range(2):
        message = await api.err("IMG.Internal.Error", "GET", f"/images/{image_id}")
        assert "injected" in message
    assert (await api.image(image_id))["imageId"] == image_id
    state = await ims_emulator.aadmin("GET", "/_emulator/faults")
    assert state["rules"][0]["fired"] == 2


async def test_raw_5xx_with_retry_after(api: Api) -> None:
    await api.http.post(
        api.url + "/_emulator/faults",
        json={
            "rules": [
                {
                    "path": "/api/image/v1/private-images",
                    "method": "GET",
                    "error": {"status": 503, "retry_after": 2},
                    "times": 1,
                }
            ]
        },
    )
    answer = await api.call("GET", "/private-images", params={"current": 1, "size": 1})
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "2"
    assert not isinstance(answer.body, dict)
    assert (
        await api.call("GET", "/private-images", params={"current": 1, "size": 1})
    ).status == 200


async def test_latency(api: Api, ims_emulator: EmulatorProcess) -> None:
    await ims_emulator.aadmin(
        "POST",
        "/_emulator/faults",
        {"rules": [{"endpoint": "list_private_images", "latency": 0.4, "times": 1}]},
    )
    started = time.monotonic()
    await api.ok("GET", "/private-images", params={"current": 1, "size": 1})
    assert time.monotonic() - started >= 0.4
    await api.ok("GET", "/private-images", params={"current": 1, "size": 1})
    # spent after one call (not a timing bound: a busy machine may be slow)
    state = await ims_emulator.aadmin("GET", "/_emulator/faults")
    assert state["rules"][0]["fired"] == 1


async def test_connection_drop_and_after(api: Api, ims_emulator: EmulatorProcess) -> None:
    image_id = (await api.create())["imageId"]
    # times 2: aiohttp's client silently re-sends an idempotent request once
    await ims_emulator.aadmin(
        "POST",
        "/_emulator/faults",
        {"rules": [{"endpoint": "get_image", "drop": True, "times": 2}]},
    )
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.call("GET", f"/images/{image_id}")
    assert (await api.image(image_id))["imageId"] == image_id

    # "after": the create happens, the answer is lost
    before = (await api.ok("GET", "/private-images", params={"current": 1, "size": 1}))["total"]
    await ims_emulator.aadmin(
        "POST",
        "/_emulator/faults",
        {
            "rules": [
                {"endpoint": "create_private_image", "drop": True, "when": "after", "times": 1}
            ]
        },
    )
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.create(name="lost answer")
    after = (await api.ok("GET", "/private-images", params={"current": 1, "size": 1}))["total"]
    assert after == before + 1


async def test_rate_is_seeded(api: Api, ims_emulator: EmulatorProcess) -> None:
    async def run() -> list[int]:
        await ims_emulator.aadmin(
            "POST",
            "/_emulator/faults",
            {
                "replace": True,
                "seed": 7,
                "rules": [
                    {"endpoint": "list_images", "rate": 0.5, "error": {"code": "IMG.DBGet.Fail"}}
                ],
            },
        )
        statuses = []
        for _ in range(20):
            answer = await api.call("GET", "/images", params={"current": 1, "size": 1})
            statuses.append(answer.status)
        return statuses

    first = await run()
    assert 0 < first.count(400) < 20
    assert await run() == first


async def test_forced_killed_and_slow_activation(api: Api, ims_emulator: EmulatorProcess) -> None:
    await ims_emulator.aadmin("POST", "/_emulator/faults", {"kill_next_uploads": 1})
    first = (await api.create())["imageId"]
    image = await api.upload(first, b"data" * 10)
    assert image["status"] == "killed" and "fault injection" in image["errMessage"]
    second = (await api.create())["imageId"]
    assert (await api.upload(second, b"data" * 10))["status"] == "active"

    third = (await api.create())["imageId"]
    await ims_emulator.aadmin("POST", "/_emulator/faults", {"kill_image_ids": [third]})
    assert (await api.upload(third, b"x"))["status"] == "killed"

    await ims_emulator.aadmin("POST", "/_emulator/faults", {"activate_delay": 0.5})
    fourth = (await api.create())["imageId"]
    await api.ok("POST", f"/private-images/{fourth}/upload-prepare", json={"size": 1})
    target = await api.ok("POST", f"/private-images/{fourth}/upload-prepare", json={"size": 1})
    await anyio.to_thread.run_sync(put_object, target, b"z", False)
    started = time.monotonic()
    await api.ok("POST", f"/private-images/{fourth}/upload-done", json={"result": "success"})
    assert (await api.image(fourth))["status"] == "saving"
    assert (await api.wait(fourth))["status"] == "active"
    assert time.monotonic() - started >= 0.45


async def test_bad_fault_config_is_rejected(api: Api) -> None:
    for bad in (
        {"rules": [{"latency": 1}]},  # neither endpoint nor path
        {"rules": [{"endpoint": "x", "when": "later"}]},
        {"rules": [{"endpoint": "x", "rate": 2}]},
        {"colour": 1},
    ):
        async with api.http.post(api.url + "/_emulator/faults", json=bad) as answer:
            assert answer.status == 400
            assert "error" in await answer.json()


async def test_s3_faults_and_credential_lifetime(api: Api, ims_emulator: EmulatorProcess) -> None:
    result = await ims_emulator.aadmin(
        "POST",
        "/_emulator/s3-faults",
        {
            "rules": [
                {"operation": "UploadPart", "part_numbers": [2], "action": "error",
                 "status": 500, "code": "InternalError", "times": 1}
            ]
        },
    )  # fmt: skip
    assert result["rules_added"] == 1
    data = payload(6 * MIB)
    image_id = (await api.create())["imageId"]
    target = await api.ok(
        "POST", f"/private-images/{image_id}/upload-prepare", json={"size": len(data)}
    )
    with pytest.raises(ClientError) as failure:
        await anyio.to_thread.run_sync(put_object, target, data, True)
    assert failure.value.response["Error"]["Code"] == "InternalError"
    # the rule is spent: the retry goes through
    upload_id = await anyio.to_thread.run_sync(put_object, target, data, True)
    await api.ok(
        "POST",
        f"/private-images/{image_id}/upload-done",
        json={"result": "success", "uploadId": upload_id},
    )
    assert (await api.wait(image_id))["status"] == "active"

    # short-lived credentials expire
    await ims_emulator.aadmin("POST", "/_emulator/s3-faults", {"credential_lifetime": 0.5})
    other = (await api.create())["imageId"]
    target = await api.ok("POST", f"/private-images/{other}/upload-prepare", json={"size": 3})
    await anyio.sleep(0.7)

    def put() -> None:
        s3_client(target).put_object(Bucket=target["bucket"], Key=target["file"], Body=b"abc")

    with pytest.raises(ClientError) as failure:
        await anyio.to_thread.run_sync(put)
    assert failure.value.response["Error"]["Code"] == "ExpiredToken"


async def test_admin_state(api: Api, ims_emulator: EmulatorProcess) -> None:
    state = await ims_emulator.aadmin("GET", "/_emulator/state")
    assert {u["userName"] for u in state["users"]} >= {"alice", "bob", "carol"}
    assert state["s3Front"] is True
    assert state["uploadDomain"] != state["s3Endpoint"]
    assert isinstance(state["images"], list) and "counts" in state
