"""The embedded S3 server: moto's server mode in a child process.

Run on its own with ``python -m aioims.emulator.s3server --port 0``: it prints
``READY http://127.0.0.1:<port>`` on stdout once it accepts connections and
serves until it is terminated (or its stdin closes, so it never outlives a
parent that died).  A child process, not a thread, so that S3 work never
competes with the emulator's (or a test's) event loop for the GIL.

:class:`EmbeddedS3` starts and stops it from async code; :func:`start_sync`
does the same for synchronous callers (pytest fixtures, benchmarks).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from typing import IO

import anyio
from anyio.abc import Process

READY_PREFIX = "READY "


def _command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "aioims.emulator.s3server", "--host", host, "--port", str(port)]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # moto must not try to reach AWS or validate real credentials.
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return env


class EmbeddedS3:
    """Async handle on a moto S3 server child process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self._process: Process | None = None

    async def start(self) -> str:
        self._process = await anyio.open_process(
            _command(self.host, self.port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_child_env(),
        )
        assert self._process.stdout is not None
        buffer = b""
        with anyio.fail_after(60):
            while b"\n" not in buffer:
                chunk = await self._process.stdout.receive()
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        if not line.startswith(READY_PREFIX):
            await self.stop()
            raise RuntimeError(f"embedded S3 server did not start: {line!r}")
        self.url = line[len(READY_PREFIX) :].strip()
        return self.url

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await process.aclose()

    async def __aenter__(self) -> EmbeddedS3:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class SyncS3Server:
    """The same child process for synchronous callers."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def start_sync(host: str = "127.0.0.1", port: int = 0) -> SyncS3Server:
    """Start the server and block until it is ready."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        _command(host, port),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_child_env(),
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        process.kill()
        process.wait()
        raise RuntimeError(f"embedded S3 server did not start: {line!r}")
    return SyncS3Server(process, line[len(READY_PREFIX) :].strip())


def _exit_when_closed(stream: IO[str]) -> None:
    stream.read()  # returns at EOF: the parent is gone
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto S3 server for the aioims emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Handler(MotoRequestHandler):
        """moto's handler, sending ``Server`` and ``Date`` once: moto's
        answers carry their own, and werkzeug adds its own too, which strict
        HTTP parsers refuse (aiohttp under ``python -X dev``: "Duplicate
        'Server' header found")."""

        _aioims_sent: set[str] | None = None

        def send_response(self, code: int, message: str | None = None) -> None:
            self._aioims_sent = set()
            super().send_response(code, message)

        def send_header(self, keyword: str, value: str) -> None:
            lowered = keyword.lower()
            sent = self._aioims_sent
            if sent is not None and lowered in ("server", "date"):
                if lowered in sent:
                    return
                sent.add(lowered)
            super().send_header(keyword, value)

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(args.host, args.port, app, True, request_handler=Handler)
    threading.Thread(target=server.serve_forever, name="moto", daemon=True).start()
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
    watcher = threading.Thread(target=_exit_when_closed, args=(sys.stdin,), daemon=True)
    watcher.start()
    watcher.join()


if __name__ == "__main__":
    main()
