"""Helpers of the migration end-to-end tests (no tests here): source files,
a local HTTP file server, bob's images, manifests, checks on the emulator."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from aioims.transfer import KiB, MiB

__all__ = ["KiB", "MiB"]

METADATA = {
    "disk_format": "raw", "min_disk": 1, "min_ram": 0, "image_type": "os_image",
    "instruction": "64-bits", "cpu_arch": "x86", "os_type": "linux", "platform": "other",
    "visibility": "private", "usage": "ecs", "os_version": "",
}  # fmt: skip


def tag() -> str:
    return "mig-" + uuid.uuid4().hex[:6]


def make_file(path: Path, size: int, seed: int | str = 0) -> str:
    """A file of ``size`` pseudo-random bytes (fast); returns its MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    block = hashlib.sha256(f"{seed}".encode()).digest() * (MiB // 32)
    with path.open("wb") as fh:
        left, counter = size, 0
        while left > 0:
            chunk = (counter.to_bytes(8, "big") + block)[: min(MiB, left)]
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            counter += 1
    return digest.hexdigest()


class FileServer:
    """Serves a directory over HTTP (``.url(name)``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = ""

    def url(self, name: str) -> str:
        return f"{self.base}/files/{name}"


@pytest.fixture
async def file_server(tmp_path: Path) -> AsyncIterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    app = web.Application()
    app.router.add_static("/files", root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = FileServer(root)
    port = runner.addresses[0][1]
    server.base = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def user_metadata(emulator: Any, who: str) -> dict[str, Any]:
    user = emulator.user(who)
    return {**METADATA, "tenant_id": user["tenantId"], "department_id": user["departmentId"]}


async def bob_images(bob: Any, emulator: Any, tmp_path: Path, sizes: list[int], prefix: str,
                     *, share_with: str | None = None) -> list[tuple[str, str, int]]:  # fmt: skip
    """Upload images of ``sizes`` as bob; returns (image id, md5, size) each
    (shared with ``share_with`` if given)."""
    out: list[tuple[str, str, int] | None] = [None] * len(sizes)
    meta = user_metadata(emulator, "bob")

    async def one(i: int, size: int) -> None:
        path = tmp_path / f"{prefix}-{i}.bin"
        md5 = await anyio.to_thread.run_sync(make_file, path, size, f"{prefix}{i}")
        image = await bob.upload_image(path, **{**meta, "name": f"{prefix}-{i}"})
        if share_with is not None:
            await bob.share_image(image.image_id, user_ids=[emulator.user(share_with)["userId"]])
        out[i] = (image.image_id, md5, size)

    async with anyio.create_task_group() as tg:
        for i, size in enumerate(sizes):
            tg.start_soon(one, i, size)
    return [x for x in out if x is not None]


def target_images(emulator: Any, names: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Alive images of the emulator by name (only ``names``)."""
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for image in emulator.state()["images"]:
        if image["name"] in found:
            found[image["name"]].append(image)
    return found


def ledger_rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return list(db.execute(sql, args).fetchall())


def parts_per_run(path: Path) -> dict[str, dict[str, list[int]]]:
    """entry id -> run id -> part numbers logged (in order)."""
    out: dict[str, dict[str, list[int]]] = {}
    for entry_id, number, run_id in ledger_rows(
        path, "SELECT entry_id, part_number, run_id FROM parts ORDER BY rowid"
    ):
        out.setdefault(entry_id, {}).setdefault(run_id, []).append(number)
    return out


def assert_no_part_sent_twice(path: Path) -> None:
    for entry_id, runs in parts_per_run(path).items():
        numbers = [n for parts in runs.values() for n in parts]
        assert len(numbers) == len(set(numbers)), f"{entry_id}: parts sent twice: {runs}"
