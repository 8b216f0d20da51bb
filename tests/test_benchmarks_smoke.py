"""The benchmark harness still runs: ``python -m benchmarks --smoke`` exits 0
and writes results with the aioims clients, the threaded sender, the machine
floors and, with the nginx sink, the HTTPS section (optional peers — boto3,
aioboto3, obstore, s5cmd, nginx — may be absent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(180)


def test_benchmarks_smoke(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((tmp_path / "latest.json").read_text())
    assert (tmp_path / "latest.md").read_text().startswith("# aioims benchmarks")
    assert result["errors"] == []

    sink = result["upload"]["sink"]["clients"]
    for name in ("aioims-default", "aioims-md5", "aioims-tuned"):
        entry = sink[name]
        assert entry["ok"], entry
        assert entry["mib_s"] > 0
        assert entry["rss_mib"] > 0
        assert entry["stall_max_ms"] is not None

    # issue 15: the threaded sender (through aioims and alone), loop-thread CPU
    for name in ("aioims-thread-tuned", "sender-thread", "sender-aiohttp"):
        entry = sink[name]
        assert entry["ok"], entry
        assert entry["mib_s"] > 0
        assert entry["loop_cpu_s_per_gib"] is not None and entry["loop_cpu_s_per_gib"] > 0
    if result["sink"].startswith("nginx"):  # the nginx sink has an HTTPS listener
        https = result["upload"]["sink_https"]["clients"]
        for name in ("aioims-thread-tuned", "sender-thread"):
            assert https[name]["ok"], https[name]
            assert https[name]["mib_s"] > 0
        assert "HTTPS" in (tmp_path / "latest.md").read_text()

    floors = result["floors"]
    for name in ("file_read", "md5", "sha256", "crc32"):
        assert floors[name]["median"] > 0
    assert floors["socket"]["ok"] and floors["socket"]["mib_s"] > 0
    assert floors["idle_loop"]["max_ms"] >= 0
    assert result["machine"]["versions"]["aioims"]
    assert result["targets"]
