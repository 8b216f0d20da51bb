"""End to end, client side (imported by ``client.py`` in a child process):
``IMSSession.upload_image`` through the emulator, for ``files`` uploaded
concurrently.

Each upload's progress events are time-stamped: ``create`` (start ->
``queued``), ``prepare`` (-> TransferStarted: upload-prepare, client,
CreateMultipartUpload), ``transfer`` (TransferStarted -> TransferCompleted),
``done`` (-> ``saving``: upload-done) and ``wait`` (-> ``active``: polling).
The share outside the S3 transfer is ``1 - transfer / total``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

REGION = "region-bench"
ALICE = {
    "token": "token-alice",
    "tenant_id": "7000000000000000001",
    "department_id": "7000000000000000011",
}


def create_kwargs(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "disk_format": "qcow2",
        "min_disk": 10,
        "min_ram": 512,
        "image_type": "os_image",
        "instruction": "64-bits",
        "cpu_arch": "x86",
        "os_type": "linux",
        "platform": "CentOS",
        "visibility": "private",
        "usage": "ecs",
        "department_id": ALICE["department_id"],
        "tenant_id": ALICE["tenant_id"],
    }


async def _one(ims: Any, path: str, index: int, config: Any) -> dict[str, float]:
    from aioims.transfer import StatusChanged, TransferCompleted, TransferStarted

    marks: dict[str, float] = {}
    start = time.perf_counter()

    def progress(event: Any) -> None:
        now = time.perf_counter() - start
        if isinstance(event, TransferStarted):
            marks.setdefault("transfer_start", now)
        elif isinstance(event, TransferCompleted):
            marks["transfer_end"] = now
        elif isinstance(event, StatusChanged):
            marks.setdefault(f"status_{event.status}", now)

    image = await ims.upload_image(
        path, config=config, progress=progress, **create_kwargs(f"bench-{index}")
    )
    total = time.perf_counter() - start
    assert str(image.status) in ("active", "ImageStatus.ACTIVE"), image.status
    queued = marks.get("status_queued", 0.0)
    t0, t1 = marks.get("transfer_start", queued), marks.get("transfer_end", queued)
    saving = marks.get("status_saving", t1)
    return {
        "total": total,
        "create": queued,
        "prepare": t0 - queued,
        "transfer": t1 - t0,
        "done": saving - t1,
        "wait": total - saving,
        "outside_share": 1 - (t1 - t0) / total,
    }


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    from aioims import HeaderAuth, IMSSession
    from aioims.transfer import TransferConfig

    config = TransferConfig(**spec.get("config", {}))
    auth = HeaderAuth({"Authorization": f"Bearer {ALICE['token']}"})
    async with IMSSession(spec["url"], REGION, auth=auth) as ims:
        start = time.perf_counter()
        runs = await asyncio.gather(
            *(_one(ims, path, n, config) for n, path in enumerate(spec["files"]))
        )
        wall = time.perf_counter() - start
    stages = ("total", "create", "prepare", "transfer", "done", "wait", "outside_share")
    return {
        "wall": wall,
        "images": len(runs),
        "bytes": spec["size"] * len(runs),
        **{f"median_{name}": statistics.median(r[name] for r in runs) for name in stages},
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_main(spec))
