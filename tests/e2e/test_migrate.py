"""Bulk migration end to end (library API): 24 images from files, URLs,
another account and shares, under a budget; failures that stay isolated;
a run stopped part-way that the next run finishes without sending a part
twice.  SDK -> emulator subprocess -> S3 front -> moto."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_migrate_helpers import (
    KiB,
    MiB,
    assert_no_part_sent_twice,
    bob_images,
    file_server,
    ledger_rows,
    make_file,
    parts_per_run,
    tag,
    target_images,
    user_metadata,
)

import aioims.migrate as mig
from aioims.testing import ims, ims_as, ims_emulator
from aioims.transfer import PartDone, PartStarted

__all__ = ["file_server", "ims", "ims_as", "ims_emulator"]

pytestmark = pytest.mark.timeout(240)


def defaults(emulator: Any) -> dict[str, Any]:
    return user_metadata(emulator, "alice")


def in_flight_maxima(events: list[Any]) -> tuple[int, int]:
    """(max parts, max images) in flight, computed from the event order alone."""
    parts: set[tuple[str, int]] = set()
    images: set[str] = set()
    max_parts = max_images = 0
    for ev in events:
        if isinstance(ev, mig.EntryTransfer) and isinstance(ev.event, PartStarted):
            parts.add((ev.entry_id, ev.event.part_number))
        elif isinstance(ev, mig.EntryTransfer) and isinstance(ev.event, PartDone):
            parts.discard((ev.entry_id, ev.event.part_number))
        elif isinstance(ev, mig.EntryStarted):
            images.add(ev.entry_id)
        elif isinstance(ev, mig.EntryFinished):
            images.discard(ev.entry_id)
        elif isinstance(ev, mig.EntryStage):
            # an image leaves the budget once the service does the rest
            server_side = ev.entry_id.startswith(("url", "shared"))
            if ev.stage == "done-sent" or (server_side and ev.stage == "created"):
                images.discard(ev.entry_id)
        max_parts = max(max_parts, len(parts))
        max_images = max(max_images, len(images))
    return max_parts, max_images


async def test_24_images_mixed_sources_within_the_budget(
    ims: Any, ims_as: Any, ims_emulator: Any, tmp_path: Path, file_server: Any
) -> None:
    t = tag()
    expected: dict[str, str] = {}  # target name -> md5
    images: list[dict[str, Any]] = []
    file_sizes = [256 * MiB, 32 * MiB, 16 * MiB, 8 * MiB + 3, 5 * KiB, 17 * KiB, 64 * KiB,
                  100 * KiB, 333 * KiB, 600 * KiB, MiB + 1, 3 * KiB]  # fmt: skip
    url_sizes = [24 * MiB, 9 * KiB, 40 * KiB, 200 * KiB, 2 * MiB]

    def make_all() -> None:
        for i, size in enumerate(file_sizes):
            name = f"{t}-file-{i}"
            expected[name] = make_file(tmp_path / f"file-{i}.img", size, f"{t}f{i}")
            images.append({"id": f"file-{i}", "name": name, "file": f"file-{i}.img"})
        for i, size in enumerate(url_sizes):
            name = f"{t}-url-{i}"
            expected[name] = make_file(file_server.root / f"u{i}.img", size, f"{t}u{i}")
            entry = {"id": f"url-{i}", "name": name, "url": file_server.url(f"u{i}.img")}
            if i != 2:  # url-2 is verified by downloading it again
                entry["md5"] = expected[name]
            images.append(entry)

    await anyio.to_thread.run_sync(make_all)
    async with ims_as("bob") as bob:
        owned = await bob_images(bob, ims_emulator, tmp_path, [12 * MiB + 5, 4 * KiB, 70 * KiB,
                                                               500 * KiB], f"{t}-bob")  # fmt: skip
        shared = await bob_images(bob, ims_emulator, tmp_path, [6 * KiB, 30 * KiB, 90 * KiB],
                                  f"{t}-bobshared", share_with="alice")  # fmt: skip
    for i, (image_id, md5, _) in enumerate(owned):
        expected[f"{t}-ims-{i}"] = md5
        images.append({"id": f"ims-{i}", "name": f"{t}-ims-{i}",
                       "ims": {"source": "bob", "image_id": image_id}})  # fmt: skip
    for i, (image_id, md5, _) in enumerate(shared):
        expected[f"{t}-shared-{i}"] = md5
        images.append({"id": f"shared-{i}", "name": f"{t}-shared-{i}",
                       "shared": {"image_id": image_id}})  # fmt: skip
    assert len(images) == 24
    manifest_path = tmp_path / "images.json"
    manifest_path.write_text(json.dumps({
        "sources": {"bob": {"endpoint": ims_emulator.url, "region": "region0",
                            "token_env": "MIG_TEST_BOB_TOKEN"}},
        "defaults": defaults(ims_emulator),
        "options": {"images": 4, "parts": 6, "part_size": "8M"},
        "images": images,
    }))  # fmt: skip

    events: list[Any] = []
    started = time.monotonic()
    async with mig.run(manifest_path, ims=ims, report=tmp_path / "report.json",
                       environ={"MIG_TEST_BOB_TOKEN": "token-bob"},
                       poll_interval=0.2) as stream:  # fmt: skip
        async for event in stream:
            events.append(event)
    elapsed = time.monotonic() - started
    report = stream.report
    assert report is not None
    failed = [(e.entry_id, e.error_code, e.error_message) for e in report.failed]
    assert failed == []
    assert report.ok and report.count("verified") == 24
    max_parts, max_images = in_flight_maxima(events)
    print(f"\n24 images, {sum(file_sizes + url_sizes) / MiB:.0f} MiB from files/URLs + "
          f"{sum(s for *_, s in owned + shared) / MiB:.1f} MiB from bob: {elapsed:.1f} s; "
          f"parts in flight max {max_parts} (limiter {report.max_parts_in_flight}), images "
          f"max {max_images} (limiter {report.max_images_in_flight})")
    assert max_parts <= 6 and report.max_parts_in_flight <= 6
    assert max_images <= 4 and report.max_images_in_flight <= 4
    assert max_parts >= 4 and report.max_images_in_flight >= 3  # the budget was used

    # Every image exists once in alice's account, active, with the source's MD5.
    found = target_images(ims_emulator, set(expected))
    for name, md5 in expected.items():
        assert [(i["status"], i["checksum"]) for i in found[name]] == [("active", md5)], name
    # The report (returned and written) has a row per image with the figures.
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["ok"] and data["counts"] == {"verified": 24}
    rows = {row["entryId"]: row for row in data["entries"]}
    big = rows["file-0"]
    assert big["size"] == 256 * MiB and big["md5"] == expected[f"{t}-file-0"]
    assert big["duration"] > 0 and big["rate"] > 0 and big["imageId"].startswith("img-")
    assert "token-bob" not in (tmp_path / "report.json").read_text()
    # The small images did not wait for the 256 MiB one.
    finish_order = [e.entry_id for e in events if isinstance(e, mig.EntryFinished)]
    assert finish_order.index("file-0") >= 10
    # Nothing secret in the ledger.
    dump = "\n".join(map(str, ledger_rows(tmp_path / "images.ledger.sqlite",
                                          "SELECT * FROM entries")))  # fmt: skip
    assert "token-bob" not in dump and "token-alice" not in dump


async def test_failing_entries_do_not_stop_the_others(
    ims: Any, ims_emulator: Any, tmp_path: Path, file_server: Any
) -> None:
    t = tag()
    for name, size in (("ok.img", 3 * KiB), ("gone.img", 2 * KiB), ("fault.img", 2 * MiB),
                       ("zero.img", 1 * KiB)):  # fmt: skip
        make_file(tmp_path / name, size, t + name)
    make_file(file_server.root / "ok-url.img", 7 * KiB, t)
    manifest = {
        "defaults": defaults(ims_emulator),
        # one image at a time, in manifest order: "fault" is the first to prepare
        "options": {"attempts": 2, "retry_delay": 0, "images": 1},
        "images": [
            {"id": "fault", "name": f"{t}-fault", "file": "fault.img"},
            {"id": "ok", "name": f"{t}-ok", "file": "ok.img"},
            {"id": "ok-url", "name": f"{t}-ok-url", "url": file_server.url("ok-url.img")},
            {"id": "gone", "name": f"{t}-gone", "file": "gone.img"},
            {"id": "url-404", "name": f"{t}-404", "url": file_server.url("missing.img")},
            {"id": "zero-disk", "name": f"{t}-zero", "file": "zero.img", "min_disk": 0},
            {"id": "no-share", "name": f"{t}-no-share", "shared": "img-share-nosuchshare0"},
        ],
    }
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest))
    (tmp_path / "gone.img").unlink()  # vanished after the manifest was written
    ims_emulator.set_faults({"rules": [{"endpoint": "upload_prepare", "times": 1, "error": {
        "code": "IMG.OperationFailed.UploadNotPermission"}}]})  # fmt: skip
    try:
        report = await mig.migrate(path, ims=ims, report=tmp_path / "r.json", poll_interval=0.2)
    finally:
        ims_emulator.clear_faults()
    status = {e.entry_id: e for e in report.entries}
    assert {k: v.status for k, v in status.items()} == {
        "fault": "failed", "ok": "verified", "ok-url": "verified", "gone": "failed",
        "url-404": "failed", "zero-disk": "failed", "no-share": "failed",
    }  # fmt: skip
    assert status["gone"].error_code == "SourceMissing" and status["gone"].attempts == 1
    assert status["url-404"].error_code == "SourceMissing"
    assert "HTTP 404" in (status["url-404"].error_message or "")
    assert status["no-share"].error_code == "SourceMissing"
    fault = status["fault"]
    assert fault.error_code == "IMG.OperationFailed.UploadNotPermission"
    assert fault.request_id and fault.error_stage == "uploading" and fault.attempts == 1
    assert fault.image_id is not None
    zero = status["zero-disk"]  # the service refuses minDisk 0 at create
    assert zero.error_code == "IMG.InvalidParameter" and zero.request_id
    assert zero.error_stage == "creating" and zero.image_id is None
    assert not report.ok
    written = json.loads((tmp_path / "r.json").read_text())
    failures = {e["entryId"]: e for e in written["entries"] if e["status"] == "failed"}
    assert failures["fault"]["requestId"] == fault.request_id
    assert set(failures) == {"fault", "gone", "url-404", "zero-disk", "no-share"}

    # A plain re-run leaves failed entries alone; retry_failed tries them again.
    again = await mig.migrate(path, ims=ims, poll_interval=0.2)
    assert again.count("failed") == 5 and not any(e.this_run for e in again.entries)
    make_file(tmp_path / "gone.img", 2 * KiB, "back")
    retried = await mig.migrate(path, ims=ims, retry_failed=True, poll_interval=0.2)
    status = {e.entry_id: e for e in retried.entries}
    assert status["gone"].status == "verified"
    assert status["fault"].status == "verified"
    assert status["fault"].image_id == fault.image_id  # continued in the same image
    assert status["zero-disk"].status == "failed"
    found = target_images(ims_emulator, {f"{t}-fault", f"{t}-gone", f"{t}-zero"})
    assert [len(found[n]) for n in (f"{t}-fault", f"{t}-gone", f"{t}-zero")] == [1, 1, 0]


async def test_stopped_run_resumes_without_resending_parts(
    ims: Any, ims_as: Any, ims_emulator: Any, tmp_path: Path
) -> None:
    t = tag()
    md5 = make_file(tmp_path / "big.img", 40 * MiB, t)
    async with ims_as("bob") as bob:
        [(bob_id, bob_md5, _)] = await bob_images(bob, ims_emulator, tmp_path, [24 * MiB],
                                                  f"{t}-src")  # fmt: skip
    manifest = mig.parse_manifest({
        "sources": {"bob": {"endpoint": ims_emulator.url, "region": "region0",
                            "token": "token-bob"}},
        "defaults": defaults(ims_emulator),
        "images": [{"id": "big", "name": f"{t}-big", "file": str(tmp_path / "big.img")},
                   {"id": "stream", "name": f"{t}-stream",
                    "ims": {"source": "bob", "image_id": bob_id}}],
    }, path=tmp_path / "m.yaml")  # fmt: skip
    ledger = tmp_path / "m.ledger.sqlite"
    done: dict[str, int] = {"big": 0, "stream": 0}
    async with mig.run(manifest, ims=ims, budget=mig.Budget(images=2, parts=2,
                                                            bandwidth=16 * MiB)) as events:
        async for event in events:
            assert not isinstance(event, mig.MigrationFinished)
            if isinstance(event, mig.EntryTransfer) and isinstance(event.event, PartDone):
                done[event.entry_id] += 1
                if done["big"] >= 2 and done["stream"] >= 1:
                    events.cancel()  # the events end soon after
    assert events.report is not None and events.report.cancelled
    stages = dict(ledger_rows(ledger, "SELECT entry_id, stage FROM entries"))
    assert stages == {"big": "uploading", "stream": "uploading"}
    assert sorted(p.name for p in (tmp_path / "m.ledger.sqlite.checkpoints").iterdir()) == [
        "big.json", "stream.json"]

    report = await mig.migrate(manifest, ims=ims, poll_interval=0.2)
    assert report.ok, [(e.entry_id, e.error_message) for e in report.entries]
    runs = parts_per_run(ledger)
    assert_no_part_sent_twice(ledger)
    second = {entry: list(r.values())[-1] for entry, r in runs.items()}
    assert len(second["big"]) <= 5 - 2 and len(second["stream"]) <= 3 - 1
    found = target_images(ims_emulator, {f"{t}-big", f"{t}-stream"})
    assert [i["checksum"] for i in found[f"{t}-big"]] == [md5]
    assert [i["checksum"] for i in found[f"{t}-stream"]] == [bob_md5]
    assert list((tmp_path / "m.ledger.sqlite.checkpoints").iterdir()) == []


async def test_two_workers_share_one_ledger_and_leaving_the_block_stops(
    ims: Any, ims_emulator: Any, tmp_path: Path
) -> None:
    t = tag()
    images = []
    for i in range(8):
        make_file(tmp_path / f"{i}.img", (i + 1) * 3 * KiB, t + str(i))
        images.append({"id": f"w{i}", "name": f"{t}-w{i}", "file": f"{i}.img"})
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"defaults": defaults(ims_emulator), "images": images}))

    # Leaving the block early stops the run; nothing is lost.
    async with mig.run(path, ims=ims) as events:
        async for event in events:
            if isinstance(event, mig.EntryStage) and event.stage == "created":
                break
    assert events.report is not None and events.report.cancelled

    started: dict[str, list[str]] = {"a": [], "b": []}

    async def worker(name: str) -> None:
        def seen(event: Any) -> None:
            if isinstance(event, mig.EntryStarted):
                started[name].append(event.entry_id)

        report = await mig.migrate(path, ims=ims, owner=name, progress=seen,
                                   budget=mig.Budget(images=2), poll_interval=0.2)  # fmt: skip
        assert report.ok  # each worker waits for the other's entries

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, "a")
        tg.start_soon(worker, "b")
    # Every entry was worked on by exactly one of them (those the first run
    # created included: they were continued, not created again).
    assert not set(started["a"]) & set(started["b"])
    assert sorted(started["a"] + started["b"]) == sorted(e["id"] for e in images)
    found = target_images(ims_emulator, {e["name"] for e in images})
    assert all(len(v) == 1 and v[0]["status"] == "active" for v in found.values())
