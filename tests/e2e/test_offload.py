"""The transfer loop (``aioims.transfer.offload``): every S3 request of a
transfer built, signed, sent and parsed off the caller's event loop."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.endpoint import AioEndpoint
from botocore.exceptions import ClientError

from aioims.models.upload import UploadTarget
from aioims.transfer import TransferConfig, upload_file
from aioims.transfer.offload import run_in_transfer_loop
from aioims.transfer.s3 import FailureKind, S3Clients

MiB = 1024 * 1024


def target(url: str, bucket: str, key: str = "disk.raw", token: str = "") -> UploadTarget:
    return UploadTarget(
        domain=url, bucket=bucket, file=key, access_key="testing", secret_key="testing",
        token=token,
    )  # fmt: skip


async def test_results_and_errors_come_back() -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert await run_in_transfer_loop(where) == "aioims-transfer-loop"

    async def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await run_in_transfer_loop(fails)


async def test_cancellation_returns_only_after_the_call_finished_there() -> None:
    """A cancelled caller waits until the call has finished in the transfer
    loop (there it may still hold a part buffer): never before."""
    started = threading.Event()
    finished = threading.Event()

    async def holds_a_buffer() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # still busy with the buffer
            finished.set()
            raise

    task = asyncio.ensure_future(run_in_transfer_loop(holds_a_buffer))
    while not started.is_set():
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


@pytest.fixture
def request_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread of every HTTP request aiobotocore sends."""
    names: list[str] = []
    original = AioEndpoint._send

    async def recording(self: Any, request: Any) -> Any:
        names.append(threading.current_thread().name)
        return await original(self, request)

    monkeypatch.setattr(AioEndpoint, "_send", recording)
    return names


@pytest.mark.parametrize("offload", [True, False])
async def test_every_request_of_an_upload_leaves_the_callers_loop(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path, request_threads: list[str],
    offload: bool,
) -> None:  # fmt: skip
    data = os.urandom(11 * MiB + 3)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    config = TransferConfig(part_size=5 * MiB, offload_s3=offload)
    result = await upload_file(target(s3_url, bucket), path, config=config)
    assert len(result.parts) == 3
    body = boto3_s3.get_object(Bucket=bucket, Key="disk.raw")["Body"].read()
    assert hashlib.md5(body).hexdigest() == hashlib.md5(data).hexdigest()
    # create, 3 parts, complete, and the sweeps: all in the transfer loop
    assert len(request_threads) >= 5
    here = threading.current_thread().name
    expected = "aioims-transfer-loop" if offload else here
    assert set(request_threads) == {expected}
    listed = boto3_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert listed == []


async def test_a_request_that_worked_proves_the_credentials(s3_url: str, bucket: str) -> None:
    """aiobotocore's request methods are not coroutine functions for
    ``inspect``: a successful request must still mark its credentials as
    working, or a later lapse after a reactive refresh would be reported as a
    permission error."""
    refreshed = 0

    async def refresh() -> UploadTarget:
        nonlocal refreshed
        refreshed += 1
        return target(s3_url, bucket, token=f"tok{refreshed}")

    config = TransferConfig()
    start = target(s3_url, bucket, token="tok0")
    async with S3Clients(start, config, refresh, lambda n: None) as clients:
        await clients.credentials_rejected(0, "AccessDenied")  # reactive refresh
        assert clients.generation == 1
        denied = ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "denied"},
             "ResponseMetadata": {"HTTPStatusCode": 403}},
            "UploadPart",
        )  # fmt: skip
        # fresh credentials refused before any request worked: permission error
        before = clients.classify(denied, 1)
        assert before is not None and before.kind is FailureKind.PERMANENT
        await clients.client.list_multipart_uploads(Bucket=bucket, Prefix="x")
        after = clients.classify(denied, 1)
        assert after is not None and after.kind is FailureKind.CREDENTIALS


def _upload_in_child(url: str, path: str) -> None:  # runs in a forked child
    import asyncio as child_asyncio

    async def main() -> None:
        config = TransferConfig(part_size=5 * MiB, max_concurrency=2)
        result = await upload_file(target(url, "bench", "child.raw"), path, config=config)
        assert len(result.parts) == 3

    child_asyncio.run(main())


async def test_a_forked_child_starts_its_own_threads(s3_sink: Any, tmp_path: Path) -> None:
    """A pre-forking server (gunicorn --preload) may fork after an upload
    started the sender pool and the transfer loop: the child has none of
    those threads and must start its own, not queue work nobody takes."""
    import multiprocessing

    path = tmp_path / "disk.raw"
    path.write_bytes(os.urandom(11 * MiB))
    config = TransferConfig(part_size=5 * MiB, max_concurrency=2)
    await upload_file(target(s3_sink.url, "bench", "parent.raw"), path, config=config)
    child = multiprocessing.get_context("fork").Process(
        target=_upload_in_child, args=(s3_sink.url, str(path))
    )
    child.start()
    await asyncio.get_running_loop().run_in_executor(None, child.join, 120)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
