"""API overhead, client side (imported by ``client.py`` in a child process).

Spec: ``url`` (the fixed-response server), ``impl`` (``sdk``: IMSSession;
``raw``: aiohttp with the same headers and a JSON decode), ``op``
(``get_image`` or ``list_private_images``), ``duration`` (s), ``concurrency``.

Reports ``calls_per_s`` and ``cpu_us_per_call`` (this process's user+sys
CPU per call) over the timed section, after a warm-up of 50 calls.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

REGION = "region-bench"
TOKEN = "Bearer token-alice"
IMAGE_ID = "img-kvvfk28fcjc0mt"
WARMUP = 50


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(
    call: Callable[[], Awaitable[Any]], duration: float, concurrency: int
) -> dict[str, float]:
    for _ in range(WARMUP):
        await call()
    count = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    cpu0, start = _cpu(), time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - start, _cpu() - cpu0
    return {
        "wall": wall,
        "cpu": cpu,
        "calls": count,
        "calls_per_s": count / wall,
        "cpu_us_per_call": cpu / max(count, 1) * 1e6,
    }


async def _sdk(spec: dict[str, Any]) -> dict[str, float]:
    from aioims import HeaderAuth, IMSSession

    async with IMSSession(spec["url"], REGION, auth=HeaderAuth({"Authorization": TOKEN})) as ims:
        if spec["op"] == "get_image":

            async def call() -> Any:
                image = await ims.get_image(IMAGE_ID)
                assert image.image_id == IMAGE_ID

        else:

            async def call() -> Any:
                page = await ims.list_private_images(current=1, size=10)
                assert len(page.items) == 10

        return await _drive(call, spec["duration"], spec["concurrency"])


async def _raw(spec: dict[str, Any]) -> dict[str, float]:
    import aiohttp

    from aioims._version import __version__

    headers = {
        "x-regionid": REGION,
        "Accept": "application/json",
        "User-Agent": f"aioims/{__version__}",
        "Authorization": TOKEN,
    }
    base = spec["url"].rstrip("/") + "/api/image/v1"
    async with aiohttp.ClientSession() as http:
        if spec["op"] == "get_image":
            url, params = f"{base}/images/{IMAGE_ID}", None
        else:
            url, params = f"{base}/private-images", {"current": "1", "size": "10"}

        async def call() -> Any:
            async with http.get(url, params=params, headers=headers) as response:
                body = await response.read()
                status = response.status
            payload = json.loads(body)
            if status != 200 or payload.get("code") != "Success":
                raise RuntimeError(f"unexpected answer {status}")
            return payload["data"]

        return await _drive(call, spec["duration"], spec["concurrency"])


def run(spec: dict[str, Any]) -> dict[str, Any]:
    runner = _sdk if spec["impl"] == "sdk" else _raw
    return asyncio.run(runner(spec))
