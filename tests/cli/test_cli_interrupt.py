"""Ctrl-C during ``aioims upload``: clean abort, a resume hint, and resuming works."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Runner, cli_env, make_file, md5

from aioims.testing import EmulatorProcess

MiB = 1 << 20
DELAY_LATER_PARTS = {
    "replace": True,
    "rules": [{"operation": "UploadPart", "part_numbers": list(range(2, 200)),
               "action": "delay", "delay": 30.0}],
}


@pytest.fixture
def slow_parts(cli_emulator: EmulatorProcess) -> Iterator[None]:
    """Part 1 goes through at once; every later part hangs 30 s in the S3 front."""
    cli_emulator.set_s3_faults(DELAY_LATER_PARTS)
    try:
        yield
    finally:
        cli_emulator.clear_s3_faults()


def _s3(emu: EmulatorProcess) -> Any:
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=emu.state()["s3Endpoint"],
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


def _multipart_uploads(emu: EmulatorProcess, key: str) -> list[dict[str, Any]]:
    s3 = _s3(emu)
    found = []
    for bucket in s3.list_buckets()["Buckets"]:
        answer = s3.list_multipart_uploads(Bucket=bucket["Name"])
        found += [u for u in answer.get("Uploads", []) if u["Key"] == key]
    return found


#: Sends the CLI a signal from inside, exactly when a hook point is reached.
HARNESS = str(Path(__file__).resolve().parents[1] / "e2e" / "crash_harness.py")


def _interrupt_after_first_part(args: list[str], env: dict[str, str],
                                sig: int = signal.SIGINT) -> tuple[int, str, str]:
    """Run ``aioims upload`` and signal it right when part 1 is stored (a
    hook, not a timer: deterministic under any load); later parts are held
    by the S3 front, so the upload is mid-transfer."""
    name = signal.Signals(sig).name.removeprefix("SIG")
    proc = subprocess.run([sys.executable, HARNESS, f"part:after#1@{name}", "--",
                           "--progress", "plain", *args], env=env, text=True,
                          capture_output=True, timeout=180)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def _rerun(hint_stderr: str) -> list[str]:
    """The command the CLI printed, as argv for ``python -m aioims.cli``."""
    match = re.search(r"^\s+(aioims upload .*)$", hint_stderr, re.M)
    assert match, hint_stderr
    argv = shlex.split(match.group(1))
    assert argv[0] == "aioims"
    return argv[1:]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_aborts_the_upload_and_says_how_to_resume(
    cli: Runner, cli_emulator: EmulatorProcess, cli_home: Path, tmp_path: Path,
    slow_parts: None, sig: int,
) -> None:
    source = make_file(tmp_path / "big.raw", 24 * MiB, seed=11)
    env = cli_env(cli_home, cli_emulator.url, "token-alice")
    rc, _, err = _interrupt_after_first_part(
        ["upload", str(source), "--name", "ctrl-c test", "--part-size", "5M",
         "--concurrency", "1"], env, sig)
    assert rc == 130, err
    assert "interrupted" in err
    # nothing was kept (no --resume): the hint uploads again, it does not "resume"
    assert "upload again with:" in err
    assert "resume with" not in err and "--resume" not in err
    image_id = re.search(r"\] image (img-[a-z0-9]+)", err).group(1)  # type: ignore[union-attr]
    assert f"--image-id {image_id}" in err
    assert "Traceback" not in err

    # the image is marked failed and no multipart upload is left behind
    shown = cli("images", "show", image_id, "--json").ok().json
    assert shown["status"] == "killed", shown
    assert _multipart_uploads(cli_emulator, image_id) == []
    assert _multipart_uploads(cli_emulator, shown.get("uploadId") or image_id) == []

    # the printed command works (once S3 is fast again)
    cli_emulator.clear_s3_faults()
    again = cli(*_rerun(err), "--json").ok().json
    assert again["items"][0]["imageId"] == image_id
    assert again["items"][0]["status"] == "active"
    assert again["items"][0]["checksum"] == md5(source)


def test_ctrl_c_with_resume_keeps_parts_and_continues(
    cli: Runner, cli_emulator: EmulatorProcess, cli_home: Path, tmp_path: Path,
    slow_parts: None,
) -> None:
    source = make_file(tmp_path / "resumable.raw", 16 * MiB, seed=12)
    env = cli_env(cli_home, cli_emulator.url, "token-alice")
    rc, _, err = _interrupt_after_first_part(
        ["upload", str(source), "--name", "ctrl-c resume", "--part-size", "5M",
         "--concurrency", "1", "--resume"], env)
    assert rc == 130, err
    assert "parts kept for --resume" in err
    assert "resume with:" in err and _rerun(err)[-1] == "--resume"
    image_id = re.search(r"\] image (img-[a-z0-9]+)", err).group(1)  # type: ignore[union-attr]
    assert len(_multipart_uploads(cli_emulator, image_id)) == 1
    checkpoints = list((cli_home / ".cache" / "aioims" / "checkpoints").glob("upload-*.json"))
    assert len(checkpoints) == 1
    checkpoint = checkpoints[0]
    assert checkpoint.exists()

    cli_emulator.clear_s3_faults()
    # plain --resume finds the image of this file again; the first part is not re-sent
    res = cli("--progress", "plain", "upload", str(source), "--name", "ctrl-c resume",
              "--part-size", "5M", "--resume", "--json").ok()
    item = res.json["items"][0]
    assert item["imageId"] == image_id
    assert item["checksum"] == md5(source)
    assert "resuming at" in res.stderr
    assert "part 1 done" not in res.stderr
    assert not checkpoint.exists()
    assert _multipart_uploads(cli_emulator, image_id) == []
