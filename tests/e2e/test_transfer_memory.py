"""BIG TEST (~1 min, marked slow): a 2 GiB upload in a child process,
checking the engine's memory and event-loop bounds (issue 4, "Done when").

The upload goes to a zero-cost S3 sink (``tests/fakes/sink.py``: the
benchmarks' sink, which reads and discards every body and stores nothing),
never to moto, which keeps objects in memory (2 GiB there cost ~6.5 GiB of
RAM and got the shared server OOM-killed).  The sink answers each part with
the ETag of the Content-MD5 the client sent and the Complete with the
multipart ETag of those, so the test still checks that every part's MD5 is
that of the bytes on disk, and that every byte reached the socket.

The child uploads a 2 GiB file (sparse, with a random 4 KiB block every MiB:
reads return real bytes and every part differs) with 8 x 8 MiB parts, while
a 1 ms ticker task records the CPU time the loop thread spends per tick
(``time.thread_time``: the work done on the loop, blind to how long other
processes kept the thread off the CPU), and every callback the loop runs is
timed the same way.  It reports its peak RSS (VmHWM).

Bounds asserted: peak RSS < 200 MiB (it must grow with max_concurrency x
part_size, never with the file size); the longest single callback and the
loop thread's CPU per tick stay under 50 ms (a blocking call, hashing or
copying on the loop, a long GC pause would all show there), with p99 CPU per
tick under 20 ms.  Wall-clock lateness of the ticker is printed, never
asserted: on a shared 2-core machine other processes keep the loop thread
off the CPU for 100+ ms at times, which says nothing about the engine.  No
throughput assertion.
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
    """Whole-file MD5 and the multipart ETag of its 8 MiB parts."""
    whole = hashlib.md5()
    parts = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(PART):
            whole.update(chunk)
            parts.update(hashlib.md5(chunk).digest())
    return whole.hexdigest(), f'"{parts.hexdigest()}-{SIZE // PART}"'


def _run_child(url: str, bucket: str, key: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, bucket, key, str(path)],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    mib = 1024**2
    print(
        f"\n2 GiB upload to the sink: {report['elapsed']:.1f} s "
        f"({SIZE / mib / report['elapsed']:.0f} MiB/s), "
        f"peak RSS {report['peak_rss'] / mib:.0f} MiB "
        f"(before: {report['rss_before'] / mib:.0f} MiB), "
        f"loop blocked: longest callback {report['max_callback'] * 1000:.1f} ms CPU "
        f"({report['max_callback_what']}); CPU per tick max "
        f"{report['max_cpu'] * 1000:.1f} ms / p99 {report['p99_cpu'] * 1000:.1f} ms; "
        f"ticker lateness (not asserted): wall max "
        f"{report['max_wall'] * 1000:.1f} ms / p99 {report['p99_wall'] * 1000:.1f} ms, "
        f"run-queue adjusted max {report['max_stall'] * 1000:.1f} ms / "
        f"p99 {report['p99_stall'] * 1000:.1f} ms; {report['ticks']} ticks"
    )
    return report


def test_2gib_upload_memory_and_loop_stalls(tmp_path: Path) -> None:
    from fakes.sink import start_sink

    path = tmp_path / "big.img"
    _make_file(path)
    md5, etag = _digests(path)
    with start_sink() as sink:
        # A real blocking call shows up every run; on an overloaded VM, CPU
        # accounting noise (interrupts, steal) can charge a trivial callback
        # 50+ ms once in a while.  So a run over the max bounds gets one more try.
        for attempt in (1, 2):
            before = sink.stats()
            report = _run_child(sink.url, "bucket", "img-2gib", path)
            after = sink.stats()
            assert report["size"] == SIZE and report["parts"] == SIZE // PART
            assert report["md5"] == md5  # the engine hashed what it read
            # every part went out whole, with the Content-MD5 of the bytes on disk
            assert after["part_bytes"] - before["part_bytes"] == SIZE
            assert after["parts"] - before["parts"] == SIZE // PART
            assert after["completes"] - before["completes"] == 1
            assert report["etag"] == etag
            assert report["peak_rss"] < 200 * 1024**2
            assert report["p99_cpu"] < 0.020
            if max(report["max_callback"], report["max_cpu"]) < 0.050 or attempt == 2:
                break
        assert report["max_callback"] < 0.050
        assert report["max_cpu"] < 0.050
