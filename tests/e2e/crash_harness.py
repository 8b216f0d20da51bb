"""Deterministic crashes at named step boundaries (``aioims.hooks``).

* :class:`Victim` runs an upload in a thread with its own event loop; when
  the hook reaches the chosen point, the thread *freezes* (blocks forever,
  inside the event loop): like a SIGKILL, no cleanup code of the library
  runs, no journal write follows, the connections stay as they are.  The
  test then runs the same upload again in its own loop and checks the
  invariants.  (The frozen thread is a daemon and holds everything it had:
  nothing is collected, so nothing warns.)
* :func:`kill_at` is the bootstrap for CLI crash tests: a child process
  that installs a hook sending itself SIGKILL at the point, then runs
  ``aioims.cli.main``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from aioims import hooks

#: Names a point, optionally with the occurrence to stop at (``part:after#2``).
Point = str


def _matcher(point: Point) -> Callable[[str], bool]:
    name, _, nth = point.partition("#")
    wanted = int(nth or 1)
    seen = 0

    def match(reached: str) -> bool:
        nonlocal seen
        if reached != name:
            return False
        seen += 1
        return seen == wanted

    return match


class Victim:
    """An upload that dies at ``point`` (see the module docstring)."""

    def __init__(self, point: Point, body: Callable[[], Awaitable[Any]]) -> None:
        self.point = point
        self.body = body
        self.reached = threading.Event()
        self.finished = threading.Event()
        self._freeze = threading.Event()  # never set: the thread stays frozen
        self.error: BaseException | None = None
        self.result: Any = None
        self.info: dict[str, Any] = {}

    def _run(self) -> None:
        match = _matcher(self.point)

        async def hook(name: str, info: dict[str, Any]) -> None:
            if match(name):
                self.info = dict(info)
                self.reached.set()
                self._freeze.wait()  # blocks the event loop: the process "died" here

        async def main() -> None:
            with hooks.installed(hook):
                self.result = await self.body()

        try:
            anyio.run(main, backend="asyncio")
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    async def crash(self, timeout: float = 120.0) -> None:
        """Start the upload and return once it is frozen at the point."""
        thread = threading.Thread(target=self._run, name=f"victim-{self.point}", daemon=True)
        thread.start()

        def wait() -> None:  # bounded by itself: a worker thread cannot be cancelled
            deadline = time.monotonic() + timeout
            while not (self.reached.wait(0.05) or self.finished.is_set()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.point!r} not reached within {timeout} s")

        await anyio.to_thread.run_sync(wait)
        if not self.reached.is_set():
            raise AssertionError(
                f"the upload ended without reaching {self.point!r}: {self.error!r}"
            )


def kill_at(argv: list[str]) -> None:
    """``python crash_harness.py POINT[@SIG] -- aioims-args...``: run the CLI
    and send this process SIGKILL (or ``SIG``: INT, TERM) when the hook
    reaches POINT (``part:after#3``: its third time)."""
    spec, rest = argv[0], argv[2:]
    point, _, sig_name = spec.partition("@")
    signum = getattr(signal, f"SIG{sig_name or 'KILL'}")
    match = _matcher(point)

    async def hook(name: str, info: dict[str, Any]) -> None:
        if match(name):
            sys.stderr.write(f"SIGNAL {sig_name or 'KILL'} AT {name}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signum)

    from aioims.cli.main import main

    with hooks.installed(hook):
        sys.argv = ["aioims", *rest]
        main()


if __name__ == "__main__":
    kill_at(sys.argv[1:])
