"""The machine's floors, measured in the same run as the clients.

* file read rate from the page cache (``os.preadv`` into one 8 MiB buffer);
* MD5, SHA-256 and CRC32 (``zlib.crc32``) single-core rates over 8 MiB buffers;
* idle event-loop lateness of a 1 ms ticker (what "no stall" looks like here);
* the loopback socket rate is a client of its own (``client.py`` ``socket``),
  interleaved with the upload clients.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import time
import zlib
from collections.abc import Callable

MiB = 1024 * 1024
BLOCK = 8 * MiB


def read_rate(path: str, limit: int) -> float:
    """Bytes/s reading ``path`` (first ``limit`` bytes) warm from the page cache."""
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = min(os.fstat(fd).st_size, limit)

        def once() -> float:
            start = time.perf_counter()
            offset = 0
            while offset < size:
                got = os.preadv(fd, [view[: min(BLOCK, size - offset)]], offset)
                if got <= 0:
                    break
                offset += got
            return offset / (time.perf_counter() - start)

        once()  # warm the page cache
        return once()
    finally:
        os.close(fd)


def _hash_rate(update: Callable[[memoryview], object], total: int) -> float:
    data = memoryview(os.urandom(BLOCK))
    update(data)
    rounds = max(1, total // BLOCK)
    start = time.perf_counter()
    for _ in range(rounds):
        update(data)
    return rounds * BLOCK / (time.perf_counter() - start)


def hash_rates(total: int) -> dict[str, float]:
    """Single-core bytes/s of MD5, SHA-256 and CRC32 over ``total`` bytes."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    crc = [0]

    def crc_update(view: memoryview) -> None:
        crc[0] = zlib.crc32(view, crc[0])

    return {
        "md5": _hash_rate(md5.update, total),
        "sha256": _hash_rate(sha.update, total),
        "crc32": _hash_rate(crc_update, total),
    }


def md5_two_threads(total: int) -> float:
    """Aggregate bytes/s of two MD5 streams hashed at once in two threads
    (hashlib releases the GIL): what the machine's cores give two
    independent MD5 passes (e.g. per-part Content-MD5 and the whole-file
    MD5)."""
    import threading

    data = memoryview(os.urandom(BLOCK))
    rounds = max(1, total // BLOCK)

    def work() -> None:
        md5 = hashlib.md5(usedforsecurity=False)
        for _ in range(rounds):
            md5.update(data)

    threads = [threading.Thread(target=work) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 2 * rounds * BLOCK / (time.perf_counter() - start)


def idle_tick(seconds: float) -> dict[str, float]:
    """Lateness of a 1 ms ticker on an idle event loop (ms)."""

    async def run() -> list[float]:
        late = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append(time.perf_counter() - start - 0.001)
        return late

    late = sorted(asyncio.run(run()))
    return {
        "max_ms": late[-1] * 1000,
        "p99_ms": late[int(0.99 * (len(late) - 1))] * 1000,
        "median_ms": statistics.median(late) * 1000,
    }


def measure(path: str, size: int, runs: int, hash_bytes: int) -> dict[str, object]:
    """All in-process floors, ``runs`` times each; medians plus the samples."""
    samples: dict[str, list[float]] = {
        "file_read": [],
        "md5": [],
        "sha256": [],
        "crc32": [],
        "md5_2threads": [],
    }
    for _ in range(runs):
        samples["file_read"].append(read_rate(path, size))
        for name, rate in hash_rates(hash_bytes).items():
            samples[name].append(rate)
        samples["md5_2threads"].append(md5_two_threads(hash_bytes))
    result: dict[str, object] = {
        name: {"median": statistics.median(values), "samples": values}
        for name, values in samples.items()
    }
    result["idle_loop"] = idle_tick(0.5 if runs == 1 else 1.0)
    return result
