"""No secrets in debug output: ``aioims.logs`` masks them in every record
(message, ``%`` args, tracebacks), the SDK's DEBUG logging through
``enable_debug_logging()`` shows none, and every CLI command run with
``--debug`` against the emulator prints none of the S3 keys, secrets and
session tokens handed out in that run (docs/cli.md, "What --debug masks")."""

from __future__ import annotations

import functools
import http.server
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ThreadedEmulator

from aioims.logs import REDACTED, RedactingFilter, enable_debug_logging, install_redaction, redact

pytestmark = pytest.mark.timeout(600)

CLI = [sys.executable, "-m", "aioims.cli"]
MiB = 1 << 20
TOKEN = "IQoJb3JpZ2luX2VjEJr_secret-session-token-value-0123456789abcdef"
ACCESS = "ASIAQWERTYUIOPASDFGH"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYsecretkey1"

#: secrets that must never be printed, whoever issued them (e.g. demo's own
#: emulator): each pattern's group "v" is the value, which must be masked
LEAKS = [
    re.compile(r"(?P<v>\b(?:ASIA|AKIA)[A-Z0-9]{16}\b)"),
    re.compile(r"""(?i)x-amz-security-token['"]?\s*[:=,]\s*(?:b?['"])?(?P<v>[^'"\s,&]+)"""),
    re.compile(r"(?i)(?:x-amz-)?credential=(?P<v>[^,&\s'\"]+)"),
    re.compile(r"(?i)signature=(?P<v>[^,&\s'\"]+)"),
    re.compile(r"(?i)\bbearer\s+(?P<v>\S+)"),
]


def pattern_leaks(text: str) -> list[str]:
    return [f"{leak.pattern}: {m.group(0)[:40]!r}" for leak in LEAKS
            for m in leak.finditer(text) if not m.group("v").startswith(REDACTED)]


# -- the filter ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        f"{{'x-amz-security-token': b'{TOKEN}', 'Authorization': b'AWS4-HMAC-SHA256 "
        f"Credential={ACCESS}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, "
        "Signature=0123456789abcdef0123456789abcdef'}",
        f"CanonicalRequest:\nPUT\n/b/k\npartNumber=1\nhost:h\nx-amz-security-token:{TOKEN}\n",
        f"https://h/b/k?X-Amz-Credential={ACCESS}%2F2026%2Fus-east-1%2Fs3%2Faws4_request&"
        f"X-Amz-Security-Token={TOKEN}&X-Amz-Signature=ab12",
        f'{{"accessKey": "{ACCESS}", "secretKey": "{SECRET}", "token": "{TOKEN}"}}',
        f"UploadTarget(access_key='{ACCESS}', secret_key='{SECRET}', token='{TOKEN}')",
        f"headers=[('X-Amz-Security-Token', '{TOKEN}')] Authorization: Bearer {TOKEN}",
        f"aws_secret_access_key={SECRET} aws_session_token={TOKEN}",
    ],
)
def test_redact_masks_every_form(text: str) -> None:
    masked = redact(text)
    for secret in (TOKEN, ACCESS, SECRET, "0123456789abcdef0123456789abcdef"):
        assert secret not in masked
    assert REDACTED in masked
    assert pattern_leaks(masked) == []
    assert masked != text


def test_redact_leaves_ordinary_text_alone() -> None:
    for text in ("Calculating signature using v4 auth.", "the Authorization header is missing",
                 "3 tokens left", "Sending http request: <AWSPreparedRequest method=PUT>",
                 "IMS GET /images -> 200 attempt=1/3"):
        assert redact(text) == text


def test_filter_masks_args_and_tracebacks() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("botocore.endpoint.sec-test")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("Sending http request: %s", {"X-Amz-Security-Token": TOKEN.encode()})
        logger.debug("headers %r and %s", {"authorization": f"Bearer {TOKEN}"}, ACCESS)
        try:
            raise RuntimeError(f"failed with token={TOKEN}")
        except RuntimeError:
            logger.exception("upload failed for %s", ACCESS)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert TOKEN not in out and ACCESS not in out
    assert out.count(REDACTED) >= 5 and "RuntimeError" in out


def test_enable_debug_logging_covers_child_loggers() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    old_level, old_handlers = root.level, list(root.handlers)
    try:
        handler = enable_debug_logging(stream=stream)
        assert enable_debug_logging(stream=stream) is handler  # no second handler
        for name in ("botocore.auth", "aiobotocore.endpoint", "aiohttp.client", "aioims.x"):
            logging.getLogger(name).debug("x-amz-security-token:%s Credential=%s", TOKEN, ACCESS)
        assert install_redaction() is install_redaction()
    finally:
        for h in root.handlers:
            if h not in old_handlers:
                root.removeHandler(h)
        root.setLevel(old_level)
    out = stream.getvalue()
    assert out.count("x-amz-security-token:***") == 4
    assert TOKEN not in out and ACCESS not in out


def test_filter_is_not_consulted_when_debug_is_off() -> None:
    calls: list[str] = []

    class Counting(RedactingFilter):
        def filter(self, record: logging.LogRecord) -> bool:
            calls.append(record.getMessage())
            return super().filter(record)

    logger = logging.getLogger("aioims.sec-quiet")
    logger.setLevel(logging.INFO)
    counting = Counting()
    logger.addFilter(counting)
    try:
        for _ in range(1000):
            logger.debug("Sending %s", TOKEN)
    finally:
        logger.removeFilter(counting)
    assert calls == []


# -- the SDK and every CLI command against the emulator ---------------------------------
def secrets_of(emu: ThreadedEmulator) -> set[str]:
    front = emu.emu.front
    assert front is not None
    values = {"token-alice", "token-bob"}
    for creds in front.credentials.temporary():
        values |= {creds.access_key, creds.secret_key, creds.token}
    return values


def leaks(text: str, secrets: set[str]) -> list[str]:
    return [f"secret value {value[:6]}..." for value in secrets if value in text] + pattern_leaks(
        text
    )


SDK_SCRIPT = r"""
import asyncio, sys
import aioims
from aioims import HeaderAuth, IMSSession
from aioims.transfer import TransferConfig

aioims.enable_debug_logging()
url, image_id, path = sys.argv[1:4]

async def main():
    auth = HeaderAuth({"Authorization": "Bearer token-alice"})
    async with IMSSession(url, "region0", auth=auth) as ims:
        config = TransferConfig(part_size=5 * 1024 * 1024, multipart_threshold=5 * 1024 * 1024)
        image = await ims.upload_image(path, image_id=image_id, config=config)
        print(image.status.value)

asyncio.run(main())
"""


def test_sdk_debug_logging_shows_no_secret(clean_emulator: ThreadedEmulator,
                                           tmp_path: Path) -> None:
    source = tmp_path / "sdk.raw"
    source.write_bytes(os.urandom(6 * MiB))
    env = base_env(tmp_path, clean_emulator, "alice")
    created = run_cli(env, "images", "create", "--name", "sdk-debug", "--disk-format", "raw",
                      "--json", debug=False)
    image_id = json.loads(created.stdout)["imageId"]
    proc = subprocess.run([sys.executable, "-c", SDK_SCRIPT, clean_emulator.url, image_id,
                           str(source)], capture_output=True, text=True, timeout=240,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "active"
    assert "botocore" in proc.stderr and "DEBUG" in proc.stderr  # debug logging was on
    assert REDACTED in proc.stderr  # and there were secrets to mask
    assert leaks(proc.stdout + proc.stderr, secrets_of(clean_emulator)) == []


def base_env(home: Path, emu: ThreadedEmulator, who: str) -> dict[str, str]:
    user = emu.emu.users[who]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMS_")}
    env.update(HOME=str(home), IMS_CONFIG_FILE=str(home / "none.toml"), COLUMNS="200",
               PYTHONUNBUFFERED="1", IMS_ENDPOINT=emu.url, IMS_REGION="region0",
               IMS_TOKEN=user.token, IMS_TENANT_ID=user.tenant_id,
               IMS_DEPARTMENT_ID=user.department_id)  # fmt: skip
    return env


def run_cli(env: dict[str, str], *args: str, debug: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, *(["--debug"] if debug else []), *args]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (args, proc.stderr[-3000:])
    return proc


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_every_cli_command_with_debug_prints_no_secret(
    clean_emulator: ThreadedEmulator, tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    emu = clean_emulator
    alice = base_env(tmp_path, emu, "alice")
    bob = base_env(tmp_path, emu, "bob")
    bob_id, carol_id = emu.emu.users["bob"].user_id, emu.emu.users["carol"].user_id
    big = tmp_path / "big.raw"
    big.write_bytes(os.urandom(6 * MiB + 5))  # two parts: multipart upload
    small = tmp_path / "small.raw"
    small.write_bytes(os.urandom(300_000))  # one PutObject
    www, base = http_dir
    (www / "remote.raw").write_bytes(os.urandom(100_000))
    manifest = tmp_path / "migrate.json"
    manifest.write_text(json.dumps({
        "defaults": {"disk_format": "raw", "min_disk": 1, "min_ram": 0,
                     "image_type": "os_image", "instruction": "64-bits", "cpu_arch": "x86",
                     "os_type": "linux", "platform": "other", "visibility": "private",
                     "usage": "ecs", "os_version": ""},
        "images": [{"id": "one", "name": "migrated", "file": str(small)}],
    }))  # fmt: skip
    outputs: dict[str, str] = {}
    commands: set[str] = set()

    def cli(env: dict[str, str], *args: str) -> Any:
        proc = run_cli(env, *args)
        outputs[" ".join(args)] = proc.stdout + proc.stderr
        commands.add(args[0])
        return json.loads(proc.stdout) if "--json" in args else proc.stdout

    cli(alice, "config")
    queued = cli(alice, "images", "create", "--name", "dbg-queued", "--disk-format", "raw",
                 "--json")["imageId"]
    image = cli(alice, "upload", str(big), "--name", "dbg-big", "--part-size", "5M",
                "--json")["items"][0]
    image_id = image["imageId"]
    cli(alice, "upload", str(small), "--name", "dbg-small", "--json")
    cli(alice, "images", "list", "--json")
    cli(alice, "images", "show", image_id, "--json")
    cli(alice, "images", "update", image_id, "--min-disk", "3", "--json")
    cli(alice, "images", "wait", image_id, "--json")
    cli(alice, "download", image_id, str(tmp_path / "down.raw"), "--json")
    bucket = cli(alice, "buckets", image_id, "--json")["items"][0]["name"]
    cli(alice, "export", image_id, "--bucket", bucket, "--json")
    cli(alice, "share", image_id, bob_id, carol_id, "--json")
    cli(alice, "shares", image_id, "--json")
    share_id = cli(bob, "shared", "list", "--all", "--json")["items"][0]["shareId"]
    cli(bob, "shared", "copy", share_id, "--name", "dbg-copy", "--wait", "--json")
    cli(bob, "shared", "delete", share_id, "--json")
    cli(alice, "unshare", image_id, carol_id, "--json")
    cli(alice, "import", "--name", "dbg-import", "--url", f"{base}/remote.raw",
        "--disk-format", "raw", "--min-disk", "1", "--wait", "--json")
    cli(alice, "migrate", str(manifest), "--json")
    cli(alice, "images", "delete", queued, "--json")
    cli(alice, "demo", "--size", "6M", "--json")
    outputs["emulator"] = run_emulator_command(alice)
    commands.add("emulator")

    from aioims.cli.main import cli as group

    assert commands >= set(group.commands), f"not exercised: {set(group.commands) - commands}"
    issued = secrets_of(emu)
    assert len(issued) >= 2 + 3 * 3  # uploads (x2), migrate: three credential sets at least
    upload_output = outputs[next(k for k in outputs if k.startswith("upload") and "big" in k)]
    assert "botocore" in upload_output and REDACTED in upload_output
    # the emulator command's banner prints its users' (well-known) bearer tokens on
    # purpose, and "Authorization: Bearer <token>" as a placeholder: not log output
    banner = outputs["emulator"].replace("Bearer <token>", "")
    for user in emu.emu.users.values():
        banner = banner.replace(f"token={user.token}", "").replace(user.token, "")
    outputs["emulator"] = banner
    found = {cmd: leaks(text, issued) for cmd, text in outputs.items()}
    assert {cmd: hits for cmd, hits in found.items() if hits} == {}


def run_emulator_command(env: dict[str, str]) -> str:
    """``aioims --debug emulator --port 0`` until ready, then Ctrl-C."""
    proc = subprocess.Popen([*CLI, "--debug", "emulator", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("IMS emulator ready at "):
                break
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)  # generous: a loaded 2-core machine
    assert any(line.startswith("IMS emulator ready at ") for line in lines), err[-2000:]
    return "".join(lines) + out + err
