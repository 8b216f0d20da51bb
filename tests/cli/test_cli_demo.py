"""``aioims demo`` end to end (embedded emulator and S3, no TTY)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli_helpers import CLI, cli_env


def _demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "demo", *args], env=cli_env(home, None, None),
                          capture_output=True, text=True, timeout=300)


def test_demo_json(tmp_path: Path) -> None:
    res = _demo(tmp_path, "--size", "8M", "--json")
    assert res.returncode == 0, res.stderr
    import json

    summary = json.loads(res.stdout)
    assert summary["ok"] is True
    assert summary["size"] == 8 << 20
    assert summary["diskFormat"] == "qcow2"
    assert summary["imageId"].startswith("img-")
    assert summary["md5"] == summary["serviceChecksum"] == summary["downloadedMd5"]
    assert summary["downloadedBytes"] == summary["size"]
    assert summary["upload"]["seconds"] > 0 and summary["download"]["seconds"] > 0
    assert summary["endpoint"].startswith("http://127.0.0.1:")


def test_demo_human_with_workdir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    res = _demo(tmp_path, "--size", "3M", "--workdir", str(work))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "aioims demo summary" in out
    assert "local = service checksum = downloaded" in out
    assert "MiB/s" in out or "KiB/s" in out
    sample, downloaded = work / "sample.qcow2", work / "downloaded.qcow2"
    assert sample.read_bytes()[:4] == b"QFI\xfb"
    assert sample.read_bytes() == downloaded.read_bytes()
