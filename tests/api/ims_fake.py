"""A scripted IMS server on a free loopback port (a real aiohttp.web app —
no mocks of aioims), recording every request it receives."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aioims import HeaderAuth, IMSSession, RetryPolicy

TOKEN = "token-alice"
REGION = "region0"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.005)


@dataclass
class Recorded:
    method: str
    path: str
    raw_path: str
    raw_query: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """A scripted answer: JSON (``payload``) or raw ``body``, after ``delay`` s."""

    payload: Any = None
    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Script = Any  # dict payload | Reply | Handler


class FakeIMS:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.routes: dict[tuple[str, str], list[Script]] = {}
        self.release = asyncio.Event()  # set at teardown: ends slow handlers
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def on(self, method: str, path: str, *scripts: Script) -> None:
        """Answer ``method path`` with ``scripts`` in turn (the last one repeats).
        ``path`` is relative to /api/image/v1 unless it starts with '//'."""
        full = path[1:] if path.startswith("//") else "/api/image/v1" + path
        self.routes[(method, full)] = list(scripts)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (path is None or r.path == "/api/image/v1" + path)
        ]

    async def sleep(self, seconds: float) -> None:
        """Sleep in a handler, cut short at teardown."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.release.wait(), seconds)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                raw_path=request.raw_path.partition("?")[0],
                raw_query=request.raw_path.partition("?")[2],
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
            )
        )
        scripts = self.routes.get((request.method, request.path))
        if not scripts:
            return web.Response(status=418, text=f"unscripted {request.method} {request.path}")
        script = scripts.pop(0) if len(scripts) > 1 else scripts[0]
        if callable(script):
            return await script(request)
        if not isinstance(script, Reply):
            script = Reply(payload=script)
        if script.delay:
            await self.sleep(script.delay)
        raw = script.body if script.body is not None else json.dumps(script.payload).encode()
        return web.Response(
            status=script.status,
            body=raw,
            headers={"Content-Type": script.content_type, **script.headers},
        )


@pytest.fixture
async def fake() -> AsyncIterator[FakeIMS]:
    server = FakeIMS()
    server.server = TestServer(server.app, host="127.0.0.1", port=0)
    await server.server.start_server()
    try:
        yield server
    finally:
        server.release.set()
        await server.server.close()


@pytest.fixture
async def ims(fake: FakeIMS) -> AsyncIterator[IMSSession]:
    async with IMSSession(
        fake.url, REGION, auth=HeaderAuth.bearer(TOKEN), timeout=5.0, retry=FAST_RETRY
    ) as session:
        yield session


def assert_common_headers(recorded: Recorded) -> None:
    assert recorded.headers["x-regionid"] == REGION
    assert recorded.headers["Authorization"] == f"Bearer {TOKEN}"
