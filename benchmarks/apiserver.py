"""A fixed-response IMS API server (aiohttp's low-level server) for the API
overhead benchmark, in its own process so it does not share the client's
loop or core budget more than the OS makes it.

* ``GET /api/image/v1/images/{id}``      -> one image (the vendor's example)
* ``GET /api/image/v1/private-images``   -> a page of ``--page`` images

Run: ``python benchmarks/apiserver.py --port 0`` (prints ``READY <url>``);
exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
from typing import Any

from aiohttp import web

IMAGE: dict[str, Any] = {
    "createdAt": "2023-05-24T05:46:14+08:00",
    "updatedAt": "2023-05-24T05:46:18+08:00",
    "id": 12,
    "imageId": "img-kvvfk28fcjc0mt",
    "imageType": "os_image",
    "name": "test",
    "size": 27205947,
    "status": "active",
    "diskFormat": "qcow2",
    "checksum": "29a9d18dc5e0aa0f14707cffda13fa92",
    "minDisk": 5,
    "minRam": 512,
    "cpuArch": "x86",
    "osType": "linux",
    "platform": "cclinux",
    "progress": "100",
    "usage": "ecs",
    "instructions": "32-bits",
    "uploadId": "",
    "imageTags": [],
    "region": "ecs49",
    "visibility": "private",
    "bootMode": "UEFI",
    "osVersion": "v2",
}


def envelope(data: Any) -> bytes:
    return json.dumps(
        {
            "requestId": "1f8a8f8a-a6e2-415e-adfa-917c92cb41d1",
            "code": "Success",
            "message": "ok",
            "data": data,
        }
    ).encode()


def bodies(page_size: int) -> dict[str, bytes]:
    items = [{**IMAGE, "id": n, "imageId": f"img-{n:014d}"} for n in range(page_size)]
    return {
        "image": envelope(IMAGE),
        "page": envelope({"size": page_size, "current": 1, "total": page_size, "list": items}),
    }


def make_handler(page_size: int) -> Any:
    answers = bodies(page_size)
    headers = {"Content-Type": "application/json", "x-request-id": "bench"}

    async def handler(request: web.BaseRequest) -> web.Response:
        path = request.path
        if path.startswith("/api/image/v1/images/"):
            return web.Response(body=answers["image"], headers=headers)
        if path == "/api/image/v1/private-images":
            return web.Response(body=answers["page"], headers=headers)
        return web.Response(status=404, body=b'{"code":"IMG.NotFound"}', headers=headers)

    return handler


def _exit_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 65536):
            pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop.set)


async def serve(host: str, port: int, page_size: int) -> None:
    loop = asyncio.get_running_loop()
    server = web.Server(make_handler(page_size), access_log=None)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()
    print(f"READY http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    threading.Thread(target=_exit_when_stdin_closes, args=(loop, stop), daemon=True).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fixed-response IMS API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--page", type=int, default=10, help="images per list page")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
