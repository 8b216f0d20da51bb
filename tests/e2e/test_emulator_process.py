"""``python -m aioims.emulator`` as a subprocess (flags, users file, faults
file, signals) and the ``aioims.testing`` fixtures with the SDK session."""



from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from test_emulator_support import MIB, Api, md5, payload, put_object

from aioims.testing import (  # noqa: F401 - fixtures
    EmulatorProcess,
    ims,
    ims_as,
    ims_emulator,
    start_emulator_process,
)

pytestmark = pytest.mark.timeout(120)


async def test_cli_users_file_faults_file_and_stop(tmp_path: Path, s3_url: str) -> None:
    users = tmp_path / "users.json"
    users.write_text(
        json.dumps(
            {
                "users": [
                    {
                        "token": "token-dave", "user_name": "dave",
                        "user_id": "7000000000000000404", "tenant_id": "7000000000000000004",
                        "department_id": "7000000000000000044",
                    }
                ]
            }
        )
    )  # fmt: skip
    faults = tmp_path / "faults.json"
    faults.write_text(
        json.dumps({"rules": [{"endpoint": "list_images", "error": "IMG.DBGet.Fail", "times": 1}]})
    )
    emulator = await anyio.to_thread.run_sync(
        lambda: start_emulator_process(
            tmp_path / "data",
            args=[
                "--config",
                str(users),
                "--faults",
                str(faults),
                "--s3-endpoint",
                s3_url,
                "--no-s3-front",
            ],
        )
    )
    try:
        assert any(line.startswith("  dave: token=token-dave") for line in emulator.output)
        assert emulator.url.startswith("http://127.0.0.1:")
        assert emulator.tokens["alice"] == "token-alice"
        assert emulator.users["carol"]["userId"] == "7000000000000000303"
        async with aiohttp.ClientSession() as http:
            api = Api(http, emulator.url, emulator.users)
            await api.err("IMG.DBGet.Fail", "GET", "/images", params={"current": 1, "size": 1})
            page = await api.ok("GET", "/images", user="dave", params={"current": 1, "size": 1})
            assert page["total"] == 0
            image_id = (await api.create(user="dave"))["imageId"]
            target = await api.ok(
                "POST", f"/private-images/{image_id}/upload-prepare", user="dave", json={"size": 1}
            )
            assert target["domain"] == s3_url and target["accessKey"] == "testing"
        assert (tmp_path / "data" / "ims.sqlite3").exists()
    finally:
        code = await anyio.to_thread.run_sync(emulator.stop)
    assert code == 0


def test_cli_stops_on_sigterm(tmp_path: Path) -> None:
    emulator = start_emulator_process(tmp_path)
    emulator.process.send_signal(signal.SIGTERM)
    assert emulator.process.wait(30) == 0
    emulator.stop()


def test_cli_rejects_a_bad_users_file(tmp_path: Path) -> None:
    bad = tmp_path / "users.json"
    bad.write_text('[{"token": "t"}]')
    result = subprocess.run(
        [sys.executable, "-m", "aioims.emulator", "--port", "0", "--data-dir", str(tmp_path),
         "--config", str(bad), "--no-s3-front", "--s3-endpoint", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode != 0
    assert "missing" in result.stderr


async def test_testing_fixtures_and_sdk_full_flow(
    ims: Any,
    ims_as: Callable[[str], Any],
    ims_emulator: EmulatorProcess,
) -> None:
    """The SDK session against the emulator, through ``aioims.testing``."""
    alice, bob = ims_emulator.user("alice"), ims_emulator.user("bob")
    image = await ims.create_private_image(
        name="sdk flow", disk_format="qcow2", min_disk=10, min_ram=512, image_type="os_image",
        instruction="64-bits", cpu_arch="x86", os_type="linux", platform="CentOS",
        visibility="private", usage="ecs", department_id=alice["departmentId"],
        tenant_id=alice["tenantId"], description="through the SDK",
    )  # fmt: skip
    assert image.status == "queued" and image.owner == alice["tenantId"]
    data = payload(5 * MIB + 17, seed=9)
    target = await ims.upload_prepare(image.image_id, size=len(data))
    wire = {
        "domain": target.domain, "accessKey": target.access_key, "secretKey": target.secret_key,
        "token": target.token, "bucket": target.bucket, "file": target.file,
    }  # fmt: skip
    upload_id = await anyio.to_thread.run_sync(put_object, wire, data, True)
    await ims.upload_done(image.image_id, result="success", upload_id=upload_id)
    active = await ims.wait_for_image(image.image_id, timeout=30, interval=0.05)
    assert active.checksum == md5(data) and active.size == len(data) and active.progress == 100

    sink = io.BytesIO()
    assert await ims.download_private_image(image.image_id, sink) == len(data)
    assert sink.getvalue() == data

    await ims.share_image(image.image_id, user_ids=[bob["userId"]])
    async with ims_as("bob") as as_bob:
        shared = await as_bob.list_shared_images(current=1, size=10)
        (share,) = [s for s in shared.items if s.image_id == image.image_id]
        assert share.image is not None and share.image.checksum == md5(data)
        copy = await as_bob.copy_shared_image(
            share.share_id, tenant_id=bob["tenantId"], department_id=bob["departmentId"],
            resource_group_id="", name="bob copy",
        )  # fmt: skip
        copied = await as_bob.wait_for_image(copy.image_id, timeout=30, interval=0.05)
        assert copied.checksum == md5(data) and copied.owner == bob["tenantId"]
        await as_bob.delete_shared_image(share.share_id)
    await ims.delete_private_image(image.image_id)
