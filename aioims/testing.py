"""pytest plugin for code that talks to IMS: a real emulator on a free port,
and a clean account for every test.

In your ``conftest.py``::

    pytest_plugins = ["aioims.testing"]

and then::

    async def test_upload(ims, ims_emulator, ims_as):
        page = await ims.list_private_images(current=1, size=10)   # as alice
        async with ims_as("bob") as bob: ...
        ims_emulator.set_faults({"rules": [{"endpoint": "upload_prepare",
                                            "error": {"code": "IMG.Internal.Error"},
                                            "times": 1}]})

Fixtures:

* ``ims_emulator`` (session scope): runs ``python -m aioims.emulator --port 0``
  in a subprocess with a temporary data dir (embedded S3 and S3 front
  included), waits for its ready line and yields an :class:`EmulatorProcess`
  (``.url``, ``.users``, ``.user("alice")``, ``.tokens``, ``.admin()``,
  ``.set_faults()``, ``.reset()``, ...).  It is stopped at the end of the session.
* ``ims`` (function scope, async): an open ``aioims.IMSSession`` on the
  emulator as alice (region ``region0``, alice's tenant ids as its
  :attr:`~aioims.IMSSession.defaults`).
* ``ims_as`` (function scope): ``ims_as("bob")`` makes an ``IMSSession`` for
  another user (a name, token or user id); use it with ``async with``; any
  left open are closed at teardown.

**Isolation**: with the plugin registered, every test that uses the emulator
(``ims_emulator``, ``ims``, ``ims_as`` or a fixture of yours built on them)
starts on a *clean account*: before it runs, the emulator is reset through
``POST /_emulator/reset`` (images, shares, multipart uploads and objects
gone, users added during the session gone, IMS and S3 fault rules cleared).
It takes a few milliseconds.  Opt out for suites that build shared state:

* per test, class or module: ``@pytest.mark.ims_shared_state``
  (``pytestmark = pytest.mark.ims_shared_state`` in a module);
* for the whole suite: ``ims_emulator_reset = false`` in the ``[pytest]`` /
  ``[tool.pytest.ini_options]`` section.

Users are :class:`aioims.emulator.identity.User` records (snake_case
attributes: ``.token``, ``.user_id``, ``.tenant_id``, ...), the same type as
the in-process ``Emulator(...).users["alice"]``.

The module imports ``aioims.IMSSession`` lazily, so it loads even where only
the emulator is installed (``pip install "aioims[testing]"`` installs all of
it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

from .emulator.identity import User, user_from_json
from .emulator.server import READY_PREFIX

try:
    from .emulator.admin import ADMIN_TOKEN_HEADER
except ImportError:  # pragma: no cover - older emulator
    ADMIN_TOKEN_HEADER = "X-Emulator-Admin-Token"  # noqa: S105 - a header name

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
#: The marker that keeps the emulator's state between tests.
SHARED_STATE_MARKER = "ims_shared_state"
#: The ini option that turns the reset between tests off (``false``).
RESET_INI = "ims_emulator_reset"
_USER_KEYS = frozenset({"token", "userName", "userId", "tenantId", "departmentId",
                        "tenantName", "departmentName"})  # fmt: skip

__all__ = [
    "REGION",
    "SHARED_STATE_MARKER",
    "EmulatorProcess",
    "User",
    "ims",
    "ims_as",
    "ims_emulator",
    "start_emulator_process",
]


class EmulatorProcess:
    """A running ``python -m aioims.emulator`` child process."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        url: str,
        data_dir: Path,
        *,
        admin_token: str | None = None,
    ) -> None:
        self.process = process
        self.url = url
        self.data_dir = data_dir
        self.admin_token = admin_token
        self.output: list[str] = []
        #: user name -> :class:`User` (``.token``, ``.user_id``, ``.tenant_id``, ...)
        self.users: dict[str, User] = {}
        #: how many times :meth:`reset` ran, and the seconds the last one took
        self.resets = 0
        self.last_reset_seconds: float | None = None

    # --- users ---------------------------------------------------------------------

    @property
    def tokens(self) -> dict[str, str]:
        """User name -> bearer token."""
        return {name: user.token for name, user in self.users.items()}

    def user(self, who: str) -> User:
        """A user by name, token or user id."""
        for name, record in self.users.items():
            if who in (name, record.token, record.user_id):
                return record
        raise KeyError(f"unknown emulator user {who!r} (known: {', '.join(self.users)})")

    def token(self, who: str) -> str:
        return self.user(who).token

    def refresh_users(self) -> dict[str, User]:
        """Read the users again (``GET /_emulator/users``)."""
        records = self.admin("GET", "/_emulator/users")
        self.users = {
            user.user_name: user
            for user in (
                user_from_json({k: v for k, v in r.items() if k in _USER_KEYS}) for r in records
            )
        }
        return self.users

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
            headers={"Content-Type": "application/json", **self._admin_headers()},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read()!r}") from None

    def _admin_headers(self) -> dict[str, str]:
        return {ADMIN_TOKEN_HEADER: self.admin_token} if self.admin_token else {}

    async def aadmin(self, method: str, path: str, payload: Any = None) -> Any:
        """Like :meth:`admin`, without blocking the event loop."""
        import aiohttp

        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method, self.url + path, json=payload, headers=self._admin_headers()
            ) as answer,
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

    def reset(self) -> float:
        """Back to a clean account (``POST /_emulator/reset``): images, shares,
        uploads and objects gone, users added later gone, IMS and S3 fault
        rules cleared.  Returns the seconds the emulator took."""
        answer = self.admin("POST", "/_emulator/reset")
        self._after_reset(answer)
        self.refresh_users()
        return self.last_reset_seconds or 0.0

    async def areset(self) -> float:
        """Like :meth:`reset`, without blocking the event loop."""
        answer = await self.aadmin("POST", "/_emulator/reset")
        self._after_reset(answer)
        records = await self.aadmin("GET", "/_emulator/users")
        self.users = {
            u.user_name: u
            for u in (user_from_json({k: v for k, v in r.items() if k in _USER_KEYS})
                      for r in records)
        }  # fmt: skip
        return self.last_reset_seconds or 0.0

    def _after_reset(self, answer: Any) -> None:
        self.resets += 1
        seconds = answer.get("seconds") if isinstance(answer, dict) else None
        self.last_reset_seconds = float(seconds) if isinstance(seconds, (int, float)) else None

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
    admin_token = os.environ.get("IMS_EMULATOR_ADMIN_TOKEN") or None
    for i, arg in enumerate(args):
        if arg == "--admin-token" and i + 1 < len(args):
            admin_token = args[i + 1]
        elif arg.startswith("--admin-token="):
            admin_token = arg.split("=", 1)[1]
    emulator = EmulatorProcess(process, url, data_dir, admin_token=admin_token)
    emulator.output = lines
    threading.Thread(target=_drain, args=(process.stdout, emulator.output), daemon=True).start()
    try:
        emulator.refresh_users()
    except BaseException:
        emulator.stop()
        raise
    return emulator


# --- the plugin -----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        RESET_INI,
        type="bool",
        default=True,
        help="aioims.testing: reset the IMS emulator before every test that uses it "
        "(default true; false keeps state between tests)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SHARED_STATE_MARKER}: aioims.testing: do not reset the IMS emulator before "
        "this test (it sees what earlier tests left)",
    )


def _reset_wanted(request: pytest.FixtureRequest) -> bool:
    if "ims_emulator" not in request.fixturenames:
        return False
    if request.node.get_closest_marker(SHARED_STATE_MARKER) is not None:
        return False
    try:
        return bool(request.config.getini(RESET_INI))
    except ValueError:  # the module was imported, not registered as a plugin
        return True


@pytest.fixture(autouse=True)
def _ims_clean_account(request: pytest.FixtureRequest) -> None:
    """Reset the emulator before each test that uses it (see the module docstring)."""
    if _reset_wanted(request):
        emulator: EmulatorProcess = request.getfixturevalue("ims_emulator")
        emulator.reset()


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
    from . import HeaderAuth, IMSSession, TenantDefaults

    user = emulator.user(who)
    return IMSSession(
        endpoint=emulator.url,
        region=REGION,
        auth=HeaderAuth.bearer(user.token),
        defaults=TenantDefaults(tenant_id=user.tenant_id, department_id=user.department_id),
    )


@_async_fixture
async def ims(ims_emulator: EmulatorProcess) -> AsyncIterator[IMSSession]:
    """An open ``IMSSession`` on the emulator, as alice (IMS fault rules cleared)."""
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
