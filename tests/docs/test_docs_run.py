"""The docs run: every ```python and ```console block of README.md and
docs/*.md is executed against a real emulator (one test per file).

* python blocks of one file run in order in one namespace (a later block may
  use names an earlier one defined), like a reader pasting them into
  ``python -m asyncio``: top-level ``await`` works, ``asyncio.run(main())``
  too.  The namespace starts with ``aioims``, ``asyncio``, an open session
  ``ims`` (alice), ``endpoint``, ``region``, ``token``, ``tenant_id``,
  ``department_id``, ``bob_user_id`` and ``image_id`` (an active image);
  ``IMS_*`` point at the emulator as alice.
* console blocks: each ``$ `` line is run with the CLI against the emulator
  (``export`` lines set variables for the following lines; a line with a pipe
  runs in ``bash``); it must exit 0.
* placeholders are replaced: ``https://ims.example.com`` and
  ``http://127.0.0.1:8080`` by the emulator's URL, the sample image id by a
  real one, the vendor's sample user/tenant/department ids by the emulator's.
* a block that cannot run is marked by an HTML comment just before its fence,
  ``<!-- docs-test: skip (reason) -->``; ``<!-- docs-test: off (reason) -->``
  ... ``<!-- docs-test: on -->`` marks a region (e.g. signature listings).

Each file starts on a clean emulator account (``POST /_emulator/reset``).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shlex
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from aioims.testing import EmulatorProcess, start_emulator_process

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REGION = "region0"
SAMPLE_IMAGE_ID = "img-kvvfk28fcjc0mt"
BLOCK_TIMEOUT = 30.0
#: Commands that serve or take long: a block running them must be marked skip.
LONG_RUNNING = frozenset({"emulator", "demo"})

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(?P<word>skip|off|on)\b(?P<rest>.*?)-->")


@attrs.frozen
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # reason, when marked

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract(path: Path) -> list[Block]:
    """The python and console blocks of a Markdown file, with their marks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: str | None = None
    region: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.search(line)
        if directive:
            word, rest = directive.group("word"), directive.group("rest").strip()
            if word == "skip":
                pending = rest or "marked"
            elif word == "off":
                region = rest or "marked"
            else:
                region = None
            i += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            if line.strip():
                pending = None  # a skip mark applies to the fence right after it
            i += 1
            continue
        marker, lang = fence.group("fence"), fence.group("info").strip().split(" ")[0]
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i])
            i += 1
        i += 1
        if lang in ("python", "console"):
            skip = pending or region
            blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n", skip))
        pending = None
    return blocks


# --- the emulator and its sample data --------------------------------------------


@attrs.define
class World:
    emulator: EmulatorProcess
    workdir: Path
    image_id: str = ""

    def user(self, name: str) -> Any:
        return self.emulator.user(name)

    @property
    def replacements(self) -> dict[str, str]:
        alice, bob = self.user("alice"), self.user("bob")
        return {
            "https://ims.example.com": self.emulator.url,
            "http://127.0.0.1:8080": self.emulator.url,
            SAMPLE_IMAGE_ID: self.image_id,
            "7085524801413873664": bob.user_id,  # the vendor's sample user id
            "7074631167042813952": alice.tenant_id,  # ... tenant id
            "7074631167051202560": alice.department_id,  # ... department id
            '"my-token"': '"token-alice"',
            "<token>": "token-alice",
        }

    def env(self) -> dict[str, str]:
        alice = self.user("alice")
        return {
            "IMS_ENDPOINT": self.emulator.url,
            "IMS_REGION": REGION,
            "IMS_TOKEN": alice.token,
            "IMS_TENANT_ID": alice.tenant_id,
            "IMS_DEPARTMENT_ID": alice.department_id,
            "IMS_CONFIG_FILE": str(self.workdir / "no-config.toml"),
            "HOME": str(self.workdir),
        }

    def substitute(self, code: str) -> str:
        for old, new in self.replacements.items():
            code = code.replace(old, new)
        return code


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    base = tmp_path_factory.mktemp("docs-emulator")
    with (base / "emulator.log").open("wb") as log:
        process = start_emulator_process(base / "data", stderr=log)
        try:
            yield process
        finally:
            process.stop()


def _sample_files(workdir: Path) -> None:
    payload = os.urandom(1 << 20)
    for name in ("disk.qcow2", "ubuntu.qcow2", "centos.qcow2", "disk.raw", "web.qcow2"):
        (workdir / name).write_bytes(payload)


async def _active_image(emulator: EmulatorProcess, workdir: Path) -> str:
    from aioims import HeaderAuth, ImageSpec, IMSSession, TenantDefaults

    alice = emulator.user("alice")
    defaults = TenantDefaults(tenant_id=alice.tenant_id, department_id=alice.department_id)
    async with IMSSession(emulator.url, REGION, auth=HeaderAuth.bearer(alice.token),
                          defaults=defaults) as ims:  # fmt: skip
        image = await ims.upload_image(workdir / "disk.raw", ImageSpec(name="docs-sample"))
    return image.image_id


@pytest.fixture
def world(
    emulator: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    emulator.reset()
    _sample_files(tmp_path)
    world = World(emulator, tmp_path)
    world.image_id = asyncio.run(_active_image(emulator, tmp_path))
    for name in [n for n in os.environ if n.startswith("IMS_") or n == "XDG_CONFIG_HOME"]:
        monkeypatch.delenv(name)
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return world


# --- running ------------------------------------------------------------------------


class PythonRunner:
    """One namespace and one event loop per doc file."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.loop = asyncio.new_event_loop()
        self.namespace: dict[str, Any] = {"__name__": "__docs__"}
        self.ims: Any = None

    def setup(self) -> None:
        import logging

        import aioims

        alice, bob = self.world.user("alice"), self.world.user("bob")
        self.ims = aioims.IMSSession.from_env()
        self.loop.run_until_complete(self.ims.open())
        self.namespace.update(
            aioims=aioims, asyncio=asyncio, logging=logging, log=logging.getLogger("docs"),
            ims=self.ims, endpoint=self.world.emulator.url, region=REGION, token=alice.token,
            tenant_id=alice.tenant_id, department_id=alice.department_id,
            bob_user_id=bob.user_id, image_id=self.world.image_id,
        )  # fmt: skip

    def run(self, block: Block) -> None:
        # In every sample, `ims` is an open session: an earlier block's
        # `async with ... as ims` closed its own, so hand ours back.
        if getattr(self.namespace.get("ims"), "closed", False):
            self.namespace["ims"] = self.ims
        source = self.world.substitute(block.code)
        code = compile(source, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if code.co_flags & inspect.CO_COROUTINE:
            coroutine = eval(code, self.namespace)
            self.loop.run_until_complete(asyncio.wait_for(coroutine, BLOCK_TIMEOUT))
        else:
            exec(code, self.namespace)

    def close(self) -> None:
        if self.ims is not None:
            self.loop.run_until_complete(self.ims.close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def run_console(block: Block, world: World) -> None:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    for raw in block.code.splitlines():
        if not raw.startswith("$ "):
            continue
        line = world.substitute(raw[2:]).strip()
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            for pair in words[1:]:
                name, _, value = pair.partition("=")
                env[name] = value
            continue
        if words[0] != "aioims" or line.rstrip().endswith("&") or set(words) & LONG_RUNNING:
            raise AssertionError(
                f"{block.where}: cannot run {line!r} (only short `aioims ...` commands run, "
                "not servers or demos; mark the block <!-- docs-test: skip (reason) -->)"
            )
        if not any(ch in line for ch in "|;<>`$"):
            _run_cli_in_process(block, line, words[1:], env)
            continue
        command = ["bash", "-o", "pipefail", "-c", line]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT,
            cwd=world.workdir, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(
                f"{block.where}: `{line}` exited {done.returncode}:\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )


def _run_cli_in_process(block: Block, line: str, args: list[str], env: dict[str, str]) -> None:
    """``aioims ARGS`` through click's runner (a subprocess costs seconds)."""
    from click.testing import CliRunner

    from aioims.cli.main import cli

    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(CliRunner().invoke(cli, args, env=changed,
                                                         prog_name="aioims")),
        daemon=True,
    )  # fmt: skip
    worker.start()
    worker.join(BLOCK_TIMEOUT)
    if not outcome:  # still running: give up on it (a daemon thread)
        raise AssertionError(f"{block.where}: `{line}` still running after {BLOCK_TIMEOUT}s")
    result = outcome[0]
    if result.exit_code != 0:
        detail = result.output[-2000:]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            detail += "".join(traceback.format_exception(result.exception))[-2000:]
        raise AssertionError(f"{block.where}: `{line}` exited {result.exit_code}:\n{detail}")


def _describe(exc: BaseException, block: Block) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    mine = [line for line in lines if block.where in line]
    return f"{block.where} ({block.lang}): {type(exc).__name__}: {exc}\n" + "".join(mine[-2:])


def test_extract_reads_marks(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- docs-test: skip (yaml) -->\n```python\na = 1\n```\n\n"
        "```python\nb = 2\n```\n<!-- docs-test: off (sigs) -->\n```console\n$ x\n```\n"
        "<!-- docs-test: on -->\n```toml\nk = 1\n```\n````python\n```\nc = 3\n````\n"
    )
    found = [(b.lang, b.code, b.skip) for b in extract(doc)]
    assert found == [("python", "a = 1\n", "(yaml)"), ("python", "b = 2\n", None),
                     ("console", "$ x\n", "(sigs)"), ("python", "```\nc = 3\n", None)]  # fmt: skip


#: The documents with blocks to run (the others hold none: nothing to test).
RUNNABLE = [p for p in DOCS if any(b.skip is None for b in extract(p))]


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_blocks_run(path: Path, request: pytest.FixtureRequest) -> None:
    blocks = [b for b in extract(path) if b.skip is None]
    world: World = request.getfixturevalue("world")  # only now: it resets and uploads
    failures: list[str] = []
    runner = PythonRunner(world)
    try:
        runner.setup()
        for block in blocks:
            try:
                if block.lang == "python":
                    runner.run(block)
                else:
                    run_console(block, world)
            except (Exception, asyncio.TimeoutError) as exc:
                failures.append(_describe(exc, block))
    finally:
        runner.close()
    assert not failures, f"{len(failures)} of {len(blocks)} blocks failed:\n" + "\n".join(
        failures
    )
