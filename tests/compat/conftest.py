"""The S3 servers of the compatibility suite: moto (the session's embedded
server from ``tests/conftest.py``) and Ceph radosgw over HTTP and HTTPS
(private CA), with STS session credentials as an image service hands them
out.

radosgw comes from ``../shared/s3-servers/ceph-rgw/`` (relative to the repo
root):

* ``AIOIMS_RGW_ENV=PATH`` (set by ``.ci/run``): the ``env`` file of a server
  somebody else started; it must answer;
* otherwise the fixture uses the server whose ``$RGW_BASE/env`` answers
  (default ``$TMPDIR/aioims-ceph-rgw``), or starts one with ``start.sh``
  under a file lock (``$RGW_BASE.lock``), once per session: two pytest runs
  (or xdist workers) share one server.  Every session using it holds a
  shared lock on ``$RGW_BASE.users``; the session that started the server
  stops it at its end only when no other session holds that lock, and a
  server it did not start is never stopped;
* ``AIOIMS_RGW_SKIP=REASON``: skip the radosgw tests with that reason (what
  ``.ci/run`` sets when apt cannot install Ceph); they are also skipped when
  radosgw is neither installed nor installable (no root or no apt-get).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import attrs
import pytest
from compat_servers import CREATED, RGW_SCRIPTS, SERVERS, S3Server, expiration

from aioims.emulator.s3server import SyncS3Server

RGW_SERVERS = ["rgw-http", "rgw-https"]
SKIP_PREFIX = "radosgw compatibility tests skipped: "


# -- radosgw: find it, or start it once (file lock), stop only what we started --------


def _parse_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            env[name.strip()] = value.strip().strip("'\"")
    return env


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=5):  # anonymous ListBuckets
            return True
    except urllib.error.HTTPError:
        return True  # it answered (403/400...)
    except OSError:
        return False


def _rgw_base() -> Path:
    base = os.environ.get("RGW_BASE")
    if base:
        return Path(base)
    return Path(os.environ.get("TMPDIR") or "/tmp") / "aioims-ceph-rgw"


def _installable() -> str | None:
    """Why start.sh cannot bring radosgw up here (None: it can)."""
    if not RGW_SCRIPTS.joinpath("start.sh").is_file():
        return f"{RGW_SCRIPTS}/start.sh not found"
    if all(shutil.which(b) for b in ("radosgw", "ceph-mon", "ceph-osd")):
        return None
    if shutil.which("apt-get") is None:
        return "Ceph (radosgw) is not installed and there is no apt-get to install it"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "Ceph (radosgw) is not installed and installing it with apt needs root"
    return None


@attrs.define
class _RgwHandle:
    env: dict[str, str]
    started_here: bool = False
    users_lock: IO[str] | None = None


def _acquire_radosgw() -> _RgwHandle:
    reason = os.environ.get("AIOIMS_RGW_SKIP")
    if reason:
        pytest.skip(SKIP_PREFIX + reason)
    given = os.environ.get("AIOIMS_RGW_ENV")
    if given:
        env = _parse_env(Path(given))
        if not _answers(env["RGW_ENDPOINT"]):
            pytest.fail(f"AIOIMS_RGW_ENV={given}: radosgw at {env['RGW_ENDPOINT']} does not answer")
        return _RgwHandle(env)
    base = _rgw_base()
    base.parent.mkdir(parents=True, exist_ok=True)
    users = open(f"{base}.users", "a+")  # noqa: SIM115 - held for the session
    fcntl.flock(users, fcntl.LOCK_SH)
    try:
        with open(f"{base}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time
            env_file = base / "env"
            if env_file.is_file():
                env = _parse_env(env_file)
                if _answers(env.get("RGW_ENDPOINT", "http://127.0.0.1:1")):
                    return _RgwHandle(env, False, users)
            why = _installable()
            if why is not None:
                pytest.skip(SKIP_PREFIX + why)
            run = subprocess.run(
                ["bash", str(RGW_SCRIPTS / "start.sh")],
                env={**os.environ, "RGW_BASE": str(base)},
                capture_output=True,
                text=True,
                timeout=900,
            )
            if run.returncode != 0:
                pytest.fail(f"start.sh failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
            return _RgwHandle(_parse_env(env_file), True, users)
    except BaseException:
        users.close()
        raise


def _release_radosgw(handle: _RgwHandle) -> None:
    if handle.users_lock is None:
        return
    users = handle.users_lock
    try:
        if not handle.started_here:
            return
        # Stop it only if no other session is using it (they hold LOCK_SH).
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # still in use: leave it running
        base = _rgw_base()
        subprocess.run(
            ["bash", str(RGW_SCRIPTS / "stop.sh")],
            env={**os.environ, "RGW_BASE": str(base)},
            capture_output=True,
            timeout=120,
        )
    finally:
        users.close()


@pytest.fixture(scope="session")
def radosgw_env() -> Iterator[dict[str, str]]:
    handle = _acquire_radosgw()
    try:
        yield handle.env
    finally:
        _release_radosgw(handle)


def _boto3_clients(
    endpoint: str, key: str, secret: str, verify: str | bool | None
) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    common: dict[str, Any] = {
        "endpoint_url": endpoint,
        "aws_access_key_id": key,
        "aws_secret_access_key": secret,
        "region_name": "us-east-1",
    }
    if verify is not None:
        common["verify"] = verify
    s3 = boto3.client(
        "s3",
        config=Config(
            s3={"addressing_style": "path"},
            # radosgw 16.2 refuses aws-chunked bodies with a trailer over https
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3},
        ),
        **common,
    )
    # STS: DurationSeconds below 900 is valid on these servers (botocore's
    # client-side validation says otherwise).
    sts = boto3.client("sts", config=Config(parameter_validation=False), **common)
    return s3, sts


def _ceph_version() -> str:
    try:
        out = subprocess.run(
            ["ceph-mon", "--version"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except OSError:
        return "?"
    parts = out.split()
    return parts[2] if len(parts) > 2 else out.strip()


_MOTO: dict[str, S3Server] = {}


def _moto(url: str) -> S3Server:
    if url not in _MOTO:
        admin, sts = _boto3_clients(url, "testing", "testing", None)
        _MOTO[url] = S3Server(
            name="moto",
            kind="moto",
            endpoint=url,
            access_key="testing",
            secret_key="testing",
            role_arn="arn:aws:iam::123456789012:role/uploader",
            version=_moto_version(),
            admin=admin,
            sts=sts,
        )
    return _MOTO[url]


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


@pytest.fixture(scope="session")
def rgw_http(radosgw_env: dict[str, str]) -> S3Server:
    env = radosgw_env
    admin, sts = _boto3_clients(
        env["RGW_ENDPOINT"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], None
    )
    return S3Server(
        name="rgw-http",
        kind="radosgw",
        endpoint=env["RGW_ENDPOINT"],
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        role_arn=env["RGW_ROLE_ARN"],
        version=_ceph_version(),
        admin=admin,
        sts=sts,
    )


@pytest.fixture(scope="session")
def rgw_https(radosgw_env: dict[str, str]) -> S3Server:
    env = radosgw_env
    admin, sts = _boto3_clients(
        env["RGW_TLS_ENDPOINT"],
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
        env["RGW_CA_BUNDLE"],
    )
    return S3Server(
        name="rgw-https",
        kind="radosgw",
        endpoint=env["RGW_TLS_ENDPOINT"],
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        role_arn=env["RGW_ROLE_ARN"],
        ca_bundle=env["RGW_CA_BUNDLE"],
        version=_ceph_version(),
        admin=admin,
        sts=sts,
    )


_FIXTURES = {"rgw-http": "rgw_http", "rgw-https": "rgw_https"}


@pytest.fixture(params=SERVERS)
def s3_server(request: pytest.FixtureRequest, s3_server: SyncS3Server) -> S3Server:
    """Each S3 server of the suite in turn.  Overrides the session's moto
    server of ``tests/conftest.py`` (which it uses for the "moto" case)."""
    if request.param == "moto":
        return _moto(s3_server.url)
    server: S3Server = request.getfixturevalue(_FIXTURES[request.param])
    return server


@pytest.fixture(params=RGW_SERVERS)
def rgw_server(request: pytest.FixtureRequest) -> S3Server:
    """radosgw only: the tests that need a server that enforces expiry and
    permissions (moto accepts any credentials)."""
    server: S3Server = request.getfixturevalue(_FIXTURES[request.param])
    return server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket on the test's server (removed after the test)."""
    return s3_server.new_bucket()


@pytest.fixture(autouse=True)
def _remove_buckets() -> Iterator[None]:
    """Empty and remove the buckets a test made (moto keeps objects in memory)."""
    yield
    while CREATED:
        server, name = CREATED.pop()
        try:
            server.remove_bucket(name)
        except Exception as exc:  # a dead server: nothing to keep tidy
            print(f"could not remove bucket {name} on {server.name}: {exc}")


@pytest.fixture(scope="session")
def lapsed_credentials(rgw_http: S3Server) -> Iterator[Callable[[], dict[str, Any]]]:
    """Session credentials that have already lapsed on radosgw (asked for at
    first use with the shortest lifetime, waited out once for the session)."""
    cache: dict[str, dict[str, Any]] = {}

    def get() -> dict[str, Any]:
        if "creds" not in cache:
            cache["creds"] = rgw_http.session_credentials(5)
        creds = cache["creds"]
        left = (expiration(creds) - datetime.now(timezone.utc)).total_seconds()
        if left > -1:
            time.sleep(left + 1.5)
        return creds

    yield get
