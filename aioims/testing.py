"""pytest fixtures for code that talks to IMS: a real emulator on a free port.

In your ``conftest.py``::

    pytest_plugins = ["aioims.testing"]

and then::

    async def test_upload(ims, ims_emulator, ims_as):
        page = await ims.list_private_images(current=1, size=10)   # as alice
        async with ims_as("bob") as bob: ...
        ims_emulator.admin("POST", "/_emulator/faults",
                           {"rules": [{"endpoint": "upload_prepare",
                                       "error": {"code": "IMG.Internal.Error"},
                                       "times": 1}]})

Fixtures:

* ``ims_emulator`` (session scope): runs ``python -m aioims.emulator --port 0``
  in a subprocess with a temporary data dir (embedded S3 and S3 front
  included), waits for its ready line and yields an :class:`EmulatorProcess`
  (``.url``, ``.users``, ``.tokens``, ``.admin()``, ``.set_faults()``, ...).
  It is stopped at the end of the session.
* ``ims`` (function scope, async): an open ``aioims.IMSSession`` on the
  emulator as alice (region ``region0``).  Fault rules are cleared before it
  is handed out.
* ``ims_as`` (function scope): ``ims_as("bob")`` makes an ``IMSSession`` for
  another user (a name, token or user id); use it with ``async with``; any
  left open are closed at teardown.

The module imports ``aioims.IMSSession`` lazily, so it loads even where only
the emulator is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

from .emulator.server import READY_PREFIX

if TYPE_CHECKING:
    from pytest_asyncio import fixture as _async_fixture

    from .session import IMSSession
else:
    try:
        from pytest_asyncio import fixture as _async_fixture
    except ImportError:  # pragma: no cover - anyio's pytest plugin runs async fixtures too
        _async_fixture = pytest.fixture

REGION = "region0"
DEFAULT_USER = "alice"

__all__ = [
    "REGION",
    "EmulatorProcess",
    "ims",
    "ims_as",
    "ims_emulator",
    "start_emulator_process",
]


class EmulatorProcess:
    """A running ``python -m aioims.emulator`` child process."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, data_dir: Path) -> None:
        self.process = process
        self.url = url
        self.data_dir = data_dir
        self.output: list[str] = []
        #: user name -> user record (``token``, ``userId``, ``tenantId``, ...)
        self.users: dict[str, dict[str, str]] = {}

    # --- users ---------------------------------------------------------------------

    @property
    def tokens(self) -> dict[str, str]:
        """User name -> bearer token."""
        return {name: user["token"] for name, user in self.users.items()}

    def user(self, who: str) -> dict[str, str]:
        """A user by name, token or user id."""
        for name, record in self.users.items():
            if who in (name, record["token"], record["userId"]):
                return record
        raise KeyError(f"unknown emulator user {who!r} (known: {', '.join(self.users)})")

    def token(self, who: str) -> str:
        return self.user(who)["token"]

    def headers(self, who: str = DEFAULT_USER, region: str = REGION) -> dict[str, str]:
        """The request headers of *who* (for raw HTTP calls)."""
        return {"Authorization": f"Bearer {self.token(who)}", "x-regionid": region}

    # --- admin API -------------------------------------------------------------------

    def admin(self, method: str, path: str, payload: Any = None, timeout: float = 30.0) -> Any:
        """Call the admin API (``/_emulator/...``) synchronously; returns the JSON."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - our own http URL
            self.url + path,
            data=data,
            method=method.upper(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read()!r}") from None

    async def aadmin(self, method: str, path: str, payload: Any = None) -> Any:
        """Like :meth:`admin`, without blocking the event loop."""
        import aiohttp

        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, json=payload) as answer,
        ):
            body = await answer.json(content_type=None)
            if answer.status >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {answer.status}: {body!r}")
            return body

    def set_faults(self, config: dict[str, Any]) -> Any:
        """``POST /_emulator/faults`` (see :mod:`aioims.emulator.faults`)."""
        return self.admin("POST", "/_emulator/faults", config)

    def clear_faults(self) -> Any:
        return self.admin("DELETE", "/_emulator/faults")

    def set_s3_faults(self, config: dict[str, Any]) -> Any:
        """``POST /_emulator/s3-faults`` (rules of the S3 front)."""
        return self.admin("POST", "/_emulator/s3-faults", config)

    def clear_s3_faults(self) -> Any:
        return self.admin("DELETE", "/_emulator/s3-faults")

    def state(self) -> Any:
        return self.admin("GET", "/_emulator/state")

    # --- lifecycle -----------------------------------------------------------------------

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop gracefully (stdin EOF), then terminate, then kill."""
        process = self.process
        if process.poll() is None and process.stdin is not None:
            process.stdin.close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        return process.returncode


def _drain(stream: IO[bytes], sink: list[str]) -> None:
    for line in iter(stream.readline, b""):
        sink.append(line.decode(errors="replace").rstrip("\n"))


def start_emulator_process(
    data_dir: str | Path,
    *,
    args: Sequence[str] = (),
    timeout: float = 60.0,
    stderr: IO[bytes] | int | None = subprocess.DEVNULL,
) -> EmulatorProcess:
    """Start ``python -m aioims.emulator --port 0 --data-dir DATA_DIR [ARGS]``
    and wait for its ready line."""
    data_dir = Path(data_dir)
    command = [
        sys.executable, "-m", "aioims.emulator", "--port", "0", "--data-dir", str(data_dir),
        "--exit-with-stdin", *args,
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
    )
    assert process.stdout is not None
    lines: list[str] = []
    url = ""
    deadline = time.monotonic() + timeout
    while not url:
        raw = process.stdout.readline()  # the emulator prints a handful of lines, then ready
        if not raw:
            process.kill()
            process.wait()
            raise RuntimeError("the IMS emulator exited before it was ready:\n" + "\n".join(lines))
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if line.startswith(READY_PREFIX):
            url = line[len(READY_PREFIX) :].strip()
        elif time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError("the IMS emulator did not become ready in time")
    emulator = EmulatorProcess(process, url, data_dir)
    emulator.output = lines
    threading.Thread(target=_drain, args=(process.stdout, emulator.output), daemon=True).start()
    try:
        users = emulator.admin("GET", "/_emulator/users")
    except BaseException:
        emulator.stop()
        raise
    emulator.users = {user["userName"]: user for user in users}
    return emulator


@pytest.fixture(scope="session")
def ims_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """An IMS emulator subprocess for the whole test session."""
    base = tmp_path_factory.mktemp("ims-emulator")
    with (base / "emulator.log").open("wb") as log:
        emulator = start_emulator_process(base / "data", stderr=log)
        try:
            yield emulator
        finally:
            emulator.stop()


def _session(emulator: EmulatorProcess, who: str) -> IMSSession:
    from . import HeaderAuth, IMSSession

    auth = HeaderAuth({"Authorization": f"Bearer {emulator.token(who)}"})
    return IMSSession(endpoint=emulator.url, region=REGION, auth=auth)


@_async_fixture
async def ims(ims_emulator: EmulatorProcess) -> AsyncIterator[IMSSession]:
    """An open ``IMSSession`` on the emulator, as alice."""
    await ims_emulator.aadmin("DELETE", "/_emulator/faults")
    async with _session(ims_emulator, DEFAULT_USER) as session:
        yield session


@_async_fixture
async def ims_as(ims_emulator: EmulatorProcess) -> AsyncIterator[Callable[[str], IMSSession]]:
    """A factory of ``IMSSession`` objects for other users (``async with``)."""
    made: list[IMSSession] = []

    def make(who: str) -> IMSSession:
        session = _session(ims_emulator, who)
        made.append(session)
        return session

    yield make
    for session in made:
        await session.close()
