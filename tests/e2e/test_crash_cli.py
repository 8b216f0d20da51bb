"""``aioims upload --resume`` and ``aioims migrate`` killed (SIGKILL) exactly
at the lifecycle's crash points (``crash_harness.py`` installs the hook in
the child), then run again: one image, active, checksum = the file's MD5,
no multipart upload left for it, no part sent twice."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_migrate_helpers import assert_no_part_sent_twice, target_images

from aioims.testing import REGION, ims_emulator

__all__ = ["ims_emulator"]

pytestmark = pytest.mark.timeout(300)
HARNESS = str(Path(__file__).with_name("crash_harness.py"))
CLI = [sys.executable, "-m", "aioims.cli"]
POINTS = ["create:after", "multipart-create:after", "part:after#2", "complete:after",
          "done:after"]  # fmt: skip


def env_for(emulator: Any, home: Path) -> dict[str, str]:
    alice = emulator.user("alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMS_")}
    env.update(HOME=str(home), IMS_CONFIG_FILE=str(home / "none.toml"), COLUMNS="120",
               PYTHONUNBUFFERED="1", IMS_ENDPOINT=emulator.url, IMS_REGION=REGION,
               IMS_TOKEN=alice.token, IMS_TENANT_ID=alice.tenant_id,
               IMS_DEPARTMENT_ID=alice.department_id)  # fmt: skip
    return env


def make_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def uploads_left(emulator: Any, image_id: str) -> list[Any]:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3", endpoint_url=emulator.state()["s3Endpoint"], aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip
    left = []
    for bucket in s3.list_buckets()["Buckets"]:
        found = s3.list_multipart_uploads(Bucket=bucket["Name"]).get("Uploads", [])
        left += [u for u in found if u["Key"] == image_id]
    return left


@pytest.mark.parametrize("point", POINTS)
def test_cli_upload_resume_killed_then_rerun(
    point: str, ims_emulator: Any, tmp_path: Path
) -> None:
    name = f"cli-crash-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "disk.raw"
    md5 = make_file(source, 16 * MiB + 77)
    env = env_for(ims_emulator, tmp_path)
    args = ["upload", str(source), "--name", name, "--part-size", "5M", "--concurrency", "2",
            "--resume"]  # fmt: skip
    first = subprocess.run([sys.executable, HARNESS, point, "--", *args], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert first.returncode == -signal.SIGKILL, first.stderr
    second = subprocess.run([*CLI, "--json", *args], env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr
    found = target_images(ims_emulator, {name})[name]
    assert [(i["status"], i["checksum"]) for i in found] == [("active", md5)]
    assert uploads_left(ims_emulator, found[0]["imageId"]) == []
    assert not list((tmp_path / ".cache" / "aioims" / "checkpoints").glob("upload-*.json"))


@pytest.mark.parametrize("point", POINTS)
def test_migrate_killed_then_rerun(point: str, ims_emulator: Any, tmp_path: Path) -> None:
    name = f"mig-crash-{uuid.uuid4().hex[:6]}"
    md5 = make_file(tmp_path / "a.img", 16 * MiB + 5)
    alice = ims_emulator.user("alice")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({
        "defaults": {"disk_format": "raw", "min_disk": 1, "min_ram": 512,
                     "image_type": "os_image", "instruction": "64-bits", "cpu_arch": "x86",
                     "os_type": "linux", "platform": "CentOS", "usage": "ecs",
                     "visibility": "private",
                     "tenant_id": alice.tenant_id, "department_id": alice.department_id},
        "images": [{"id": "a", "name": name, "file": "a.img"}],
    }))  # fmt: skip
    env = env_for(ims_emulator, tmp_path)
    args = ["migrate", str(manifest), "--progress", "plain", "--part-size", "5M"]
    first = subprocess.run([sys.executable, HARNESS, point, "--", *args], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert first.returncode == -signal.SIGKILL, first.stderr
    second = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr
    found = target_images(ims_emulator, {name})[name]
    assert [(i["status"], i["checksum"]) for i in found] == [("active", md5)]
    assert uploads_left(ims_emulator, found[0]["imageId"]) == []
    assert_no_part_sent_twice(tmp_path / "m.ledger.sqlite")


MiB = 1 << 20


def test_sigterm_with_sigint_ignored_cleans_up_like_ctrl_c(
    ims_emulator: Any, tmp_path: Path
) -> None:
    """``cmd &`` / nohup ignore SIGINT: SIGTERM must still take the clean path
    (abort the multipart upload, tell the service, exit 130)."""
    name = f"cli-term-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "disk.raw"
    make_file(source, 16 * MiB + 3)
    env = env_for(ims_emulator, tmp_path)
    args = ["upload", str(source), "--name", name, "--part-size", "5M", "--concurrency", "1"]
    proc = subprocess.run(
        [sys.executable, HARNESS, "part:after#1@TERM", "--", *args], env=env,
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr
    found = target_images(ims_emulator, {name})[name]
    assert len(found) == 1 and found[0]["status"] == "killed"
    assert uploads_left(ims_emulator, found[0]["imageId"]) == []
