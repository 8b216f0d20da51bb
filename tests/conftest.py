"""Shared fixtures and suite-wide rules.

S3 for tests (moto's server mode in a child process, on a free loopback port):

* ``s3_server`` / ``s3_url`` — the suite's shared moto server.  It is started
  once, but looked at before every test that asks for it: a server that died
  (OOM, crash) is restarted for the next test instead of failing every test
  after it, and one grown past ``fakes.moto.MOTO_RSS_LIMIT`` is recycled after the test.
  Ask for ``s3_url`` in each test (function scope); never keep the URL in a
  module- or session-scoped fixture.
* ``bucket`` — a fresh bucket per test (the per-test reset): at teardown its
  objects and multipart uploads are counted, deleted, and the bucket
  removed, so moto's memory does not grow over the suite.  A test that left
  more than ``MOTO_DATA_LIMIT`` (64 MiB) in it fails: big data goes to the
  zero-cost sink (``fakes.sink``) or the in-memory ``fakes.fake_s3``.
* ``boto3_s3`` — an independent boto3 client on the current moto server.

Test doubles live in ``tests/fakes`` (importable as ``fakes``): ``FakeS3``
(scripted S3 client for the transfer engine; fixture ``fake_s3``),
``FakeClock`` (retry and deadline tests) and the zero-cost sink (fixture
``s3_sink``).  See docs/testing.md.

Lanes: tests listed in ``fakes.lanes.SLOW_TESTS`` (or using a fixture of
``SLOW_FIXTURES``, e.g. ``cli``: a subprocess per call) get the ``slow`` marker, so
``python -m pytest -m "not slow"`` is the fast lane; ``python -m pytest``
(the README's command and ``.ci/run``) runs everything.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aioims.emulator.s3server import SyncS3Server

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `import fakes` from any test, whatever the import mode
    sys.path.insert(0, str(HERE))

from fakes.lanes import SLOW_TESTS, is_slow_item  # noqa: E402
from fakes.moto import MOTO_DATA_LIMIT, MiB, SharedMoto, empty_bucket  # noqa: E402

__all__ = ["SLOW_TESTS", "SharedMoto"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow_item(item.nodeid, getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_moto() -> Iterator[SharedMoto]:
    holder = SharedMoto()
    try:
        yield holder
    finally:
        holder.stop()


@pytest.fixture
def s3_server(shared_moto: SharedMoto) -> Iterator[SyncS3Server]:
    """The shared moto server, alive at the start of the test."""
    yield shared_moto.get()
    shared_moto.recycle_if_big()


@pytest.fixture
def s3_url(s3_server: SyncS3Server) -> str:
    return s3_server.url


@pytest.fixture
def boto3_s3(shared_moto: SharedMoto, s3_url: str) -> Any:
    """An independent S3 client (boto3, not aiobotocore) on the moto server."""
    return shared_moto.boto3(s3_url)


@pytest.fixture
def bucket(boto3_s3: Any, s3_server: SyncS3Server) -> Iterator[str]:
    """A fresh, empty bucket on the moto server; emptied and removed after the test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3_s3.create_bucket(Bucket=name)
    yield name
    if s3_server.process.poll() is not None:
        return  # the server died: the next test gets a new one
    try:
        held = empty_bucket(boto3_s3, name)
    except Exception:  # an unreachable server is replaced by recycle_if_big / get
        return
    assert held <= MOTO_DATA_LIMIT, (
        f"the test left {held / MiB:.0f} MiB in moto (limit {MOTO_DATA_LIMIT // MiB} MiB): "
        "send big data to the sink (fakes.sink) or FakeS3 instead"
    )


# --- zero-cost doubles --------------------------------------------------------------------


@pytest.fixture
def s3_sink() -> Iterator[Any]:
    """A zero-cost S3 sink child process (``fakes.sink``): ``.url``, ``.stats()``.
    For big-data tests: bodies are read and discarded, nothing is stored."""
    from fakes.sink import start_sink

    with start_sink() as sink:
        yield sink


@pytest.fixture
def fake_s3() -> Any:
    """A fresh in-memory :class:`fakes.fake_s3.FakeS3` (AWS behaviour); plug it
    into a transfer with ``TransferConfig(s3_client_factory=fake_s3.client_factory)``."""
    from fakes.fake_s3 import FakeS3

    return FakeS3()
