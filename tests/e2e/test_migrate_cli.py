"""``aioims migrate`` in a subprocess: SIGKILL part-way, run again, and
everything is there once, with no part sent twice; ``--dry-run``."""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_migrate_helpers import (
    KiB,
    MiB,
    assert_no_part_sent_twice,
    bob_images,
    ledger_rows,
    make_file,
    parts_per_run,
    tag,
    target_images,
    user_metadata,
)

from aioims import HeaderAuth, IMSSession
from aioims.testing import REGION, ims_emulator

__all__ = ["ims_emulator"]

pytestmark = pytest.mark.timeout(240)
CLI = [sys.executable, "-m", "aioims.cli"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP by a thread (the CLI runs in another process)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def cli_env(emulator: Any, home: Path) -> dict[str, str]:
    alice = emulator.user("alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMS_")}
    env.update(HOME=str(home), IMS_CONFIG_FILE=str(home / "none.toml"), COLUMNS="200",
               PYTHONUNBUFFERED="1", IMS_ENDPOINT=emulator.url, IMS_REGION=REGION,
               IMS_TOKEN="token-alice", IMS_TENANT_ID=alice["tenantId"],
               IMS_DEPARTMENT_ID=alice["departmentId"], MIG_BOB_TOKEN="token-bob")  # fmt: skip
    return env


def upload_as_bob(emulator: Any, tmp_path: Path, sizes: list[int], prefix: str) -> Any:
    async def main() -> Any:
        auth = HeaderAuth.bearer("token-bob")
        async with IMSSession(emulator.url, REGION, auth=auth) as bob:
            return await bob_images(bob, emulator, tmp_path, sizes, prefix)

    return anyio.run(main)


HARNESS = str(Path(__file__).with_name("crash_harness.py"))


def interrupt(args: list[str], env: dict[str, str], at: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI and signal it exactly at the hook point ``at``
    (``part:after#4`` = SIGKILL when the 4th part is stored, ``...@INT``)."""
    return subprocess.run([sys.executable, HARNESS, at, "--", *args[3:]], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=180)  # fmt: skip


def metadata_defaults(emulator: Any) -> dict[str, Any]:
    meta = user_metadata(emulator, "alice")
    del meta["tenant_id"], meta["department_id"]  # from IMS_TENANT_ID / IMS_DEPARTMENT_ID
    return meta


def test_sigkill_then_rerun_finishes_everything_once(
    ims_emulator: Any, tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    t = tag()
    root, base = http_dir
    expected: dict[str, str] = {}
    images: list[dict[str, Any]] = []
    expected[f"{t}-big"] = make_file(tmp_path / "big.img", 48 * MiB, t)  # 6 parts
    images.append({"id": "big", "name": f"{t}-big", "file": "big.img"})
    for i in range(4):
        size = (i + 1) * 7 * KiB
        expected[f"{t}-small-{i}"] = make_file(tmp_path / f"s{i}.img", size, t + str(i))
        images.append({"id": f"small-{i}", "name": f"{t}-small-{i}", "file": f"s{i}.img"})
    expected[f"{t}-url"] = make_file(root / "u.img", 300 * KiB, t + "u")
    images.append({"id": "url", "name": f"{t}-url", "url": f"{base}/u.img",
                   "md5": expected[f"{t}-url"]})  # fmt: skip
    [(bob_id, bob_md5, _)] = upload_as_bob(ims_emulator, tmp_path, [32 * MiB], f"{t}-src")
    expected[f"{t}-stream"] = bob_md5  # 4 parts, streamed from bob's account
    images.append({"id": "stream", "name": f"{t}-stream",
                   "ims": {"source": "bob", "image_id": bob_id}})  # fmt: skip
    manifest = tmp_path / "images.json"
    manifest.write_text(json.dumps({
        "sources": {"bob": {"endpoint": ims_emulator.url, "region": REGION,
                            "token_env": "MIG_BOB_TOKEN"}},
        "defaults": metadata_defaults(ims_emulator),
        "images": images,
    }))  # fmt: skip
    ledger = tmp_path / "images.ledger.sqlite"
    env = cli_env(ims_emulator, tmp_path)
    args = [*CLI, "migrate", str(manifest), "--progress", "plain", "--images", "3",
            "--parts", "3"]  # fmt: skip

    def logged(entry: str) -> int:
        try:
            return sum(len(p) for p in parts_per_run(ledger).get(entry, {}).values())
        except sqlite3.OperationalError:  # the first run is still creating the ledger
            return 0

    def verified() -> int:
        return ledger_rows(ledger, "SELECT count(*) FROM entries WHERE stage='verified'")[0][0]

    # Run 1: SIGKILL when the 4th part (of "big" or "stream") is stored.
    first = interrupt(args, env, "part:after#4")
    assert first.returncode == -signal.SIGKILL, first.stderr
    killed = dict(ledger_rows(ledger, "SELECT entry_id, stage FROM entries"))
    assert "uploading" in (killed["big"], killed["stream"])
    assert ledger_rows(ledger, "SELECT count(*) FROM entries WHERE owner IS NOT NULL")[0][0] >= 1

    # Run 2 (takes over the dead process's leases at once): Ctrl-C at its 2nd part.
    before = logged("big") + logged("stream")
    second = interrupt(args, env, "part:after#2@INT")
    assert second.returncode == 130, second.stderr
    assert logged("big") + logged("stream") > before
    assert "run the same command again to continue" in second.stderr
    assert ledger_rows(ledger, "SELECT count(*) FROM entries WHERE owner IS NOT NULL")[0][0] == 0
    assert json.loads((tmp_path / "images.report.json").read_text())["cancelled"] is True

    # Run 3 finishes everything.
    third = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert third.returncode == 0, third.stderr
    report = json.loads(third.stdout)
    assert report["ok"] and report["counts"] == {"verified": len(images)}
    assert json.loads((tmp_path / "images.report.json").read_text())["runId"] == report["runId"]
    assert "token-" not in third.stdout + third.stderr

    # No duplicate images, every checksum right, no part sent twice.
    found = target_images(ims_emulator, set(expected))
    for name, md5 in expected.items():
        assert [(i["status"], i["checksum"]) for i in found[name]] == [("active", md5)], name
    assert_no_part_sent_twice(ledger)
    runs = parts_per_run(ledger)
    sent = {entry: sum(len(p) for p in r.values()) for entry, r in runs.items()}
    # every part sent once at most (a part stored just before the SIGKILL may
    # be on S3 without being in the ledger's log: ListParts finds it)
    assert sent.get("big", 0) <= 6 and sent.get("stream", 0) <= 4


def test_dry_run_checks_without_changing_anything(
    ims_emulator: Any, tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    t = tag()
    root, base = http_dir
    make_file(tmp_path / "a.img", 20 * MiB, t)
    make_file(root / "u.img", 4 * KiB, t)
    manifest = tmp_path / "plan.json"
    manifest.write_text(json.dumps({
        "defaults": metadata_defaults(ims_emulator),
        "images": [
            {"id": "a", "name": f"{t}-a", "file": "a.img"},
            {"id": "u", "name": f"{t}-u", "url": f"{base}/u.img"},
            {"id": "missing", "name": f"{t}-m", "file": "missing.img"},
            {"id": "too-small", "name": f"{t}-t", "file": "a.img", "min_disk": 0},
        ],
    }))  # fmt: skip
    env = cli_env(ims_emulator, tmp_path)
    proc = subprocess.run([*CLI, "migrate", str(manifest), "--dry-run", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    plan = json.loads(proc.stdout)
    rows = {row["entryId"]: row for row in plan["entries"]}
    assert not plan["ok"] and plan["targetOk"]
    assert (rows["a"]["size"], rows["a"]["parts"], rows["a"]["action"]) == (20 * MiB, 3,
                                                                             "migrate")
    assert rows["u"]["size"] == 4 * KiB and rows["u"]["problems"] == []
    assert "no md5" in rows["u"]["warnings"][0]
    assert "no such file" in rows["missing"]["problems"][0]
    assert "min_disk 0 GiB" in rows["too-small"]["problems"][0]
    assert not (tmp_path / "plan.ledger.sqlite").exists()

    # Text mode, a good manifest: the plan table and exit 0.
    data = json.loads(manifest.read_text())
    data["images"] = data["images"][:2]
    manifest.write_text(json.dumps(data))
    proc = subprocess.run([*CLI, "migrate", str(manifest), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "plan OK" in proc.stdout and "migrate" in proc.stdout

    # An invalid manifest: exit 2, the entry and the field named.
    data["images"][0]["disk_format"] = "vhdx"
    manifest.write_text(json.dumps(data))
    proc = subprocess.run([*CLI, "migrate", str(manifest), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "a: disk_format:" in proc.stderr
