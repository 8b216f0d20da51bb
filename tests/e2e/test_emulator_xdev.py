"""Under ``python -X dev`` aiohttp's response parser is strict (a duplicate
``Server`` header is an error): a multipart upload through the S3 front must
still work, so the front sends each header once (moto sends two ``Server``)."""



from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from test_emulator_support import MIB, Api

from aioims.testing import EmulatorProcess, ims_emulator  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(300)

SCRIPT = r"""
import asyncio, json, sys, warnings
from aioims import HeaderAuth, IMSSession
from aioims.transfer import TransferConfig

url, token, image_id, path = sys.argv[1:5]

async def main():
    auth = HeaderAuth({"Authorization": f"Bearer {token}"})
    async with IMSSession(url, "region0", auth=auth) as ims:
        config = TransferConfig(part_size=5 * 1024 * 1024, multipart_threshold=5 * 1024 * 1024,
                                max_concurrency=2, max_attempts_per_part=1)
        image = await ims.upload_image(path, image_id=image_id, config=config)
        print(json.dumps({"status": str(image.status.value), "checksum": image.checksum,
                          "dev_mode": sys.flags.dev_mode}))

asyncio.run(main())
"""


async def test_multipart_upload_under_python_dev_mode(
    ims_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    data = os.urandom(11 * MIB)  # three parts of 5 MiB, 5 MiB and 1 MiB
    source = tmp_path / "dev.raw"
    source.write_bytes(data)
    async with aiohttp.ClientSession() as http:
        api = Api(http, ims_emulator.url, cast(Any, ims_emulator.users))
        image_id = (await api.create(diskFormat="raw", minDisk=1))["imageId"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMS_", "PYTHON"))}
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", SCRIPT, ims_emulator.url,
         ims_emulator.token("alice"), image_id, str(source)],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dev_mode"] is True
    assert result["status"] == "active"
    assert result["checksum"] == hashlib.md5(data).hexdigest()
    assert "Duplicate" not in proc.stderr


def test_demo_under_python_dev_mode(tmp_path: Path) -> None:
    """``aioims demo`` under ``python -X dev``: the emulator's own S3 client
    (bucket creation in upload-prepare) talks to the embedded moto directly,
    and a second ``Server`` header (moto's and werkzeug's) failed every
    upload-prepare ("Duplicate 'Server' header found")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMS_", "PYTHON"))}
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-m", "aioims", "demo", "--size", "8M"],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    assert "Duplicate" not in proc.stderr
    assert "OK: uploaded, verified, downloaded, identical" in proc.stdout
