"""The migration ledger: claims and leases between workers, owner checks,
failed entries, the parts log — on a real SQLite file."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from aioims.migrate import LeaseLost, Ledger, parse_manifest

DEFAULTS = {
    "disk_format": "raw", "min_disk": 1, "min_ram": 0, "image_type": "os_image",
    "instruction": "64-bits", "cpu_arch": "x86", "os_type": "linux", "platform": "other",
    "visibility": "private", "usage": "ecs",
}  # fmt: skip


def entries(count: int) -> Any:
    images = [{"id": f"e{i}", "name": f"n{i}", "file": f"f{i}"} for i in range(count)]
    return parse_manifest({"defaults": DEFAULTS, "images": images}).entries


async def test_claims_are_exclusive_and_in_manifest_order(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with Ledger(path, owner="a") as a, Ledger(path, owner="b") as b:
        await a.sync(entries(3))
        await b.sync(entries(3))  # idempotent
        ids = ["e0", "e1", "e2"]
        first = await a.claim(ids)
        second = await b.claim(ids)
        third = await a.claim(ids, exclude=["e0"])
        assert [s.entry_id for s in (first, second, third) if s] == ["e0", "e1", "e2"]
        assert await b.claim(ids, exclude=["e1"]) is None  # the others are held by a
        # b cannot touch a's entry; a can
        with pytest.raises(LeaseLost):
            await b.update("e0", stage="creating")
        await a.update("e0", stage="created", image_id="img-x")
        state = await a.get("e0")
        assert state is not None and (state.stage, state.image_id, state.owner) == (
            "created", "img-x", "a")
        assert (await a.heartbeat(["e0", "e1"])) == {"e1"}
        assert [s.entry_id for s in await a.held_elsewhere(ids)] == ["e1"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "l.sqlite.checkpoints") == Ledger(path).checkpoint_dir


async def test_expired_lease_and_dead_owner_can_be_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dead_owner = f"{socket.gethostname()}:{dead.pid}:abc"
    async with Ledger(path, owner="a", lease=0.2) as a, \
            Ledger(path, owner="b") as b, Ledger(path, owner=dead_owner) as gone:  # fmt: skip
        await a.sync(entries(2))
        assert (await a.claim(["e0"])) is not None
        assert (await gone.claim(["e1"])) is not None
        assert (await b.claim(["e0", "e1"], exclude=["e0"])).entry_id == "e1"  # dead pid
        await anyio.sleep(0.3)
        taken = await b.claim(["e0"])
        assert taken is not None and taken.entry_id == "e0"  # a's lease expired
        with pytest.raises(LeaseLost):
            await a.update("e0", stage="creating")
        assert await a.heartbeat(["e0"]) == {"e0"}


async def test_failed_entries_stay_failed_until_reset(tmp_path: Path) -> None:
    async with Ledger(tmp_path / "l.sqlite", owner="a") as ledger:
        await ledger.sync(entries(2))
        await ledger.claim(["e0"])
        await ledger.update("e0", stage="created", image_id="img-1")
        await ledger.update("e0", stage="failed", resume_stage="created", attempts=3,
                            error_code="IMG.X", release=True)  # fmt: skip
        assert (await ledger.claim(["e0"])) is None
        assert await ledger.reset_failed(["e0", "e1"]) == 1
        state = await ledger.claim(["e0"])
        assert state is not None
        assert (state.stage, state.attempts, state.image_id) == ("created", 0, "img-1")


async def test_parts_log_and_runs(tmp_path: Path) -> None:
    async with Ledger(tmp_path / "l.sqlite", owner="a") as ledger:
        await ledger.sync(entries(1))
        await ledger.start_run("r1")
        await ledger.log_parts("r1", [("e0", 1, 10), ("e0", 2, 10)])
        await ledger.claim(["e0"])
        await ledger.finish_run("r1", "finished")
        assert await ledger.parts("e0") == [("e0", 1, 10, "r1"), ("e0", 2, 10, "r1")]
        state = await ledger.get("e0")
        assert state is not None and state.owner is None  # finish_run released it


async def test_sync_keeps_progress_and_update_rejects_unknown_columns(tmp_path: Path) -> None:
    async with Ledger(tmp_path / "l.sqlite", owner="a") as ledger:
        await ledger.sync(entries(1))
        await ledger.claim(["e0"])
        await ledger.update("e0", stage="uploading", checkpoint="/x.json", add_duration=1.5)
        await ledger.sync(entries(1))
        state = await ledger.get("e0")
        assert state is not None
        assert (state.stage, state.checkpoint, state.duration) == ("uploading", "/x.json", 1.5)
        with pytest.raises(ValueError, match="unknown ledger column"):
            await ledger.update("e0", owner="evil")


def test_concurrent_claims_from_threads_never_collide(tmp_path: Path) -> None:
    """Eight workers with their own connections claim 40 entries at once."""
    path = tmp_path / "l.sqlite"

    async def setup() -> None:
        async with Ledger(path, owner="setup") as ledger:
            await ledger.sync(entries(40))

    anyio.run(setup)
    ids = [f"e{i}" for i in range(40)]
    claimed: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        async def go() -> None:
            mine: list[str] = []
            async with Ledger(path, owner=name) as ledger:
                while (state := await ledger.claim(ids)) is not None:
                    mine.append(state.entry_id)
                    await ledger.update(state.entry_id, stage="verified", release=True)
            claimed[name] = mine

        anyio.run(go)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [i for mine in claimed.values() for i in mine]
    assert sorted(everything) == sorted(ids)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM entries WHERE stage='verified'").fetchone()[0] == 40


def test_calls_do_not_block_the_event_loop(tmp_path: Path) -> None:
    """A writer holding the database lock stalls ledger calls, not the loop."""
    path = tmp_path / "l.sqlite"

    async def main() -> None:
        async with Ledger(path, owner="a") as ledger:
            await ledger.sync(entries(1))
            blocker = sqlite3.connect(
                path, isolation_level=None, timeout=5, check_same_thread=False
            )
            blocker.execute("BEGIN IMMEDIATE")
            ticks = 0
            claimed = anyio.Event()

            async def tick() -> None:
                # Release the lock only after the loop ran 10 ticks while the
                # claim waited: a claim blocking the loop never gets the lock.
                nonlocal ticks
                while not claimed.is_set():
                    await anyio.sleep(0.01)
                    ticks += 1
                    if ticks == 10:
                        threading.Thread(target=blocker.execute, args=("COMMIT",)).start()

            async with anyio.create_task_group() as tg:
                tg.start_soon(tick)
                await ledger.claim(["e0"])
                claimed.set()
            blocker.close()
            assert ticks >= 10  # the loop kept running while the claim waited

    anyio.run(main)
    assert os.path.exists(path)
