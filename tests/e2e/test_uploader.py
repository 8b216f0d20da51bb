"""The upload coordinator and the verified download, end to end: SDK ->
emulator (subprocess) -> S3 front -> moto S3; results checked with boto3."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from aioims import (
    ChecksumMismatchError,
    ImageKilledError,
    ImageStatus,
    UploadFailedError,
    ValidationError,
)
from aioims.testing import ims, ims_emulator  # noqa: F401 - fixtures
from aioims.transfer import (
    CredentialsRefreshed,
    EventStream,
    MiB,
    PartDone,
    StatusChanged,
    TransferCompleted,
    TransferConfig,
    TransferStarted,
)
from aioims.transfer.download import BytesReceived, DownloadStarted
from aioims.uploader import Uploader, checkpoint_path_for

CONFIG = TransferConfig(part_size=5 * MiB, max_concurrency=4, multipart_threshold=5 * MiB)


def create_kwargs(emulator: Any, name: str) -> dict[str, Any]:
    alice = emulator.user("alice")
    return {
        "name": name,
        "disk_format": "qcow2",
        "min_disk": 10,
        "min_ram": 512,
        "image_type": "os_image",
        "instruction": "64-bits",
        "cpu_arch": "x86",
        "os_type": "linux",
        "platform": "CentOS",
        "visibility": "private",
        "usage": "ecs",
        "department_id": alice["departmentId"],
        "tenant_id": alice["tenantId"],
    }


def make_file(path: Path, size: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


@pytest.fixture
def s3(ims_emulator: Any) -> Any:
    """An independent boto3 client on the emulator's backing S3 server."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=ims_emulator.state()["s3Endpoint"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(autouse=True)
def _clean_faults(ims_emulator: Any) -> Any:
    yield
    ims_emulator.clear_faults()
    ims_emulator.clear_s3_faults()
    ims_emulator.admin("POST", "/_emulator/s3-faults", {"credential_lifetime": 3600})


def object_md5(s3: Any, bucket: str, key: str) -> str:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def open_uploads(s3: Any) -> list[dict[str, Any]]:
    uploads = []
    for bucket in s3.list_buckets()["Buckets"]:
        uploads += s3.list_multipart_uploads(Bucket=bucket["Name"]).get("Uploads", [])
    return uploads


async def test_upload_image_full_flow_and_verified_download(
    ims: Any, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    source = tmp_path / "disk.qcow2"
    md5 = make_file(source, 23 * MiB + 12345)
    events: list[Any] = []
    image = await ims.upload_image(
        source, config=CONFIG, progress=events.append, **create_kwargs(ims_emulator, "flow")
    )
    assert image.status is ImageStatus.ACTIVE
    assert image.checksum == md5
    assert image.size == source.stat().st_size
    statuses = [e.status for e in events if isinstance(e, StatusChanged)]
    assert statuses == ["queued", "saving", "active"]
    assert sorted(e.part_number for e in events if isinstance(e, PartDone)) == [1, 2, 3, 4, 5]
    done = [e for e in events if isinstance(e, TransferCompleted)]
    assert done and done[0].result.md5 == md5 and done[0].result.upload_id
    # the object, read back with an independent client, is the file
    found = [
        (b["Name"], image.image_id)
        for b in s3.list_buckets()["Buckets"]
        if s3.list_objects_v2(Bucket=b["Name"], Prefix=image.image_id).get("KeyCount")
    ]
    assert len(found) == 1
    assert await anyio.to_thread.run_sync(object_md5, s3, *found[0]) == md5
    assert open_uploads(s3) == []

    dest = tmp_path / "back.qcow2"
    got: list[Any] = []
    written = await ims.download_private_image(image.image_id, dest, progress=got.append)
    assert written == source.stat().st_size
    assert dest.read_bytes() == source.read_bytes()
    assert not (tmp_path / "back.qcow2.part").exists()
    assert isinstance(got[0], DownloadStarted) and got[0].total_bytes == written
    assert [e for e in got if isinstance(e, BytesReceived)][-1].bytes_received_total == written


async def test_download_resumes_a_partial_file_with_range(
    ims: Any, ims_emulator: Any, tmp_path: Path
) -> None:
    source = tmp_path / "disk.raw"
    make_file(source, 3 * MiB + 7)
    image = await ims.upload_image(source, config=CONFIG, **create_kwargs(ims_emulator, "rng"))
    dest = tmp_path / "out.raw"
    part = tmp_path / "out.raw.part"
    part.write_bytes(source.read_bytes()[: MiB + 3])
    got: list[Any] = []
    n = await ims.download_private_image(image.image_id, dest, resume=True, progress=got.append)
    assert n == source.stat().st_size
    assert dest.read_bytes() == source.read_bytes()
    assert got[0] == DownloadStarted(image.image_id, n, MiB + 3)

    # a corrupted prefix is caught by the MD5 check: no final file, no .part
    bad = tmp_path / "bad.raw"
    Path(str(bad) + ".part").write_bytes(b"\0" * 1000)
    with pytest.raises(ChecksumMismatchError):
        await ims.download_private_image(image.image_id, bad, resume=True)
    assert not bad.exists() and not Path(str(bad) + ".part").exists()


async def test_permanent_part_failure_aborts_and_marks_failed(
    ims: Any, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    source = tmp_path / "disk.qcow2"
    make_file(source, 16 * MiB)
    ims_emulator.set_s3_faults(
        {"rules": [{"operation": "UploadPart", "part_numbers": [2], "action": "error",
                    "status": 500, "code": "InternalError", "times": None}]}
    )  # fmt: skip
    config = TransferConfig(
        part_size=5 * MiB, max_concurrency=2, max_attempts_per_part=2, backoff_base=0.01
    )
    with pytest.raises(UploadFailedError) as info:
        await ims.upload_image(source, config=config, **create_kwargs(ims_emulator, "perm"))
    err = info.value
    assert err.stage == "transfer" and err.image_id
    assert (await ims.get_image(err.image_id)).status is ImageStatus.KILLED
    assert open_uploads(s3) == []


async def test_transient_faults_are_retried(ims: Any, ims_emulator: Any, tmp_path: Path) -> None:
    source = tmp_path / "disk.qcow2"
    md5 = make_file(source, 16 * MiB)
    ims_emulator.set_s3_faults(
        {"rules": [
            {"operation": "UploadPart", "part_numbers": [1], "action": "error",
             "status": 503, "code": "SlowDown", "times": 2},
            {"operation": "UploadPart", "part_numbers": [3], "action": "reset", "times": 2},
        ]}
    )  # fmt: skip
    config = TransferConfig(part_size=5 * MiB, max_concurrency=4, backoff_base=0.01)
    image = await ims.upload_image(source, config=config, **create_kwargs(ims_emulator, "tr"))
    assert image.checksum == md5


async def test_expired_credentials_are_refreshed(
    ims: Any, ims_emulator: Any, tmp_path: Path
) -> None:
    source = tmp_path / "disk.qcow2"
    md5 = make_file(source, 21 * MiB)
    ims_emulator.set_s3_faults(
        {"rules": [{"operation": "UploadPart", "part_numbers": [3], "action": "expire",
                    "times": 1}]}
    )  # fmt: skip
    events: list[Any] = []
    config = TransferConfig(part_size=5 * MiB, max_concurrency=1)
    image = await ims.upload_image(
        source, config=config, progress=events.append, **create_kwargs(ims_emulator, "cred")
    )
    assert image.checksum == md5
    assert any(isinstance(e, CredentialsRefreshed) for e in events)


async def test_killed_image_raises_dedicated_error(
    ims: Any, ims_emulator: Any, tmp_path: Path
) -> None:
    source = tmp_path / "disk.qcow2"
    make_file(source, MiB)
    ims_emulator.set_faults({"kill_next_uploads": 1})
    with pytest.raises(ImageKilledError) as info:
        await ims.upload_image(source, config=CONFIG, **create_kwargs(ims_emulator, "kill"))
    assert info.value.image_id and info.value.stage == "wait"


async def test_bad_input_fails_before_anything_is_created(
    ims: Any, ims_emulator: Any, tmp_path: Path
) -> None:
    before = ims_emulator.state()["counts"]
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(ValidationError):
        await ims.upload_image(empty, **create_kwargs(ims_emulator, "empty"))
    with pytest.raises(ValidationError):
        await ims.upload_image(tmp_path / "missing.raw", **create_kwargs(ims_emulator, "x"))
    with pytest.raises(ValidationError):
        await ims.upload_image(
            tmp_path / "empty.raw", **{**create_kwargs(ims_emulator, " bad"), "name": " bad"}
        )
    source = tmp_path / "ok.raw"
    make_file(source, 1000)
    with pytest.raises(ValidationError):
        await ims.upload_image(source, **{**create_kwargs(ims_emulator, "x"), "name": " lead"})
    assert ims_emulator.state()["counts"] == before


async def test_cancel_without_checkpoint_aborts_and_marks_failed(
    ims: Any, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    source = tmp_path / "disk.qcow2"
    make_file(source, 26 * MiB)
    ims_emulator.set_s3_faults(
        {"rules": [{"operation": "UploadPart", "action": "delay", "delay": 0.5, "times": None}]}
    )
    stream = EventStream()
    image_ids: list[str] = []

    async def cancel_after_first_part(scope: anyio.CancelScope) -> None:
        async for event in stream:
            if isinstance(event, StatusChanged) and event.status == "queued":
                image_ids.append(event.image_id)
            if isinstance(event, PartDone):
                scope.cancel()
                return

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_after_first_part, scope)
            await ims.upload_image(
                source, config=CONFIG, progress=stream, **create_kwargs(ims_emulator, "cn")
            )
    assert scope.cancelled_caught
    assert image_ids
    assert open_uploads(s3) == []
    assert (await ims.get_image(image_ids[0])).status is ImageStatus.KILLED


async def test_checkpoint_resume_after_cancel_sends_only_missing_parts(
    ims: Any, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    source = tmp_path / "disk.qcow2"
    md5 = make_file(source, 31 * MiB)  # 7 parts of 5 MiB
    ims_emulator.set_s3_faults(
        {"rules": [{"operation": "UploadPart", "action": "delay", "delay": 0.3, "times": None}]}
    )
    checkpoints = tmp_path / "checkpoints"
    config = TransferConfig(part_size=5 * MiB, max_concurrency=2)
    first: list[Any] = []

    def watch(event: Any) -> None:
        first.append(event)

    uploader = Uploader(ims, config=config, checkpoint_dir=checkpoints, progress=watch)
    with anyio.move_on_after(30) as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_when_three_parts_done() -> None:
                while sum(isinstance(e, PartDone) for e in first) < 3:
                    await anyio.sleep(0.02)
                scope.cancel()

            tg.start_soon(cancel_when_three_parts_done)
            await uploader.upload(source, **create_kwargs(ims_emulator, "resume"))
    assert scope.cancelled_caught
    done_first = {e.part_number for e in first if isinstance(e, PartDone)}
    image_id = next(e.image_id for e in first if isinstance(e, StatusChanged))
    cp = checkpoint_path_for(checkpoints, source, uploader.account())
    assert cp.exists() and (cp.stat().st_mode & 0o777) == 0o600
    assert "testing" not in cp.read_text() and "secret" not in cp.read_text().lower()
    assert (await ims.get_image(image_id)).status is ImageStatus.QUEUED
    assert len(open_uploads(s3)) == 1

    ims_emulator.clear_s3_faults()
    second: list[Any] = []
    again = Uploader(ims, config=config, checkpoint_dir=checkpoints, progress=second.append)
    image = await again.upload(source)  # no create kwargs: the checkpoint names the image
    assert image.image_id == image_id
    assert image.checksum == md5
    sent_again = {e.part_number for e in second if isinstance(e, PartDone)}
    # finished parts are never sent again; a part whose answer was lost to the
    # cancellation may already be on S3 (ListParts then shows it): not resent
    assert sent_again.isdisjoint(done_first)
    assert sent_again and max(done_first) < 7
    started = next(e for e in second if isinstance(e, TransferStarted))
    assert started.resumed_parts >= len(done_first)
    assert started.resumed_parts + len(sent_again) == 7
    assert not cp.exists()
    assert open_uploads(s3) == []


async def test_delete_on_failure_removes_the_created_image(
    ims: Any, ims_emulator: Any, tmp_path: Path
) -> None:
    source = tmp_path / "disk.qcow2"
    make_file(source, MiB)
    ims_emulator.set_faults(
        {"rules": [{"endpoint": "upload_prepare", "error": {"code": "IMG.OperationFailed.UploadNotPermission"}, "times": 1}]}  # noqa: E501
    )
    with pytest.raises(UploadFailedError) as info:
        await ims.upload_image(
            source, delete_on_failure=True, **create_kwargs(ims_emulator, "del")
        )
    assert info.value.stage == "prepare"
    assert info.value.code == "IMG.OperationFailed.UploadNotPermission"
    page = await ims.list_private_images(filter=f"imageId:eq:{info.value.image_id}")
    assert page.items == []


async def test_multi_part_upload_end_to_end(
    ims: Any, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    """Real HTTP all the way (SDK -> emulator -> S3 front -> moto), checked with
    boto3.  48 MiB: moto keeps objects in memory (big data goes to the sink,
    tests/e2e/test_transfer_memory.py)."""
    source = tmp_path / "big.raw"
    md5 = await anyio.to_thread.run_sync(make_file, source, 48 * MiB + 7)
    image = await ims.upload_image(
        source,
        config=TransferConfig(part_size=8 * MiB, max_concurrency=8),
        **create_kwargs(ims_emulator, "large"),
    )
    assert image.status is ImageStatus.ACTIVE and image.checksum == md5
    assert image.size == 48 * MiB + 7
    bucket = next(
        b["Name"]
        for b in s3.list_buckets()["Buckets"]
        if s3.list_objects_v2(Bucket=b["Name"], Prefix=image.image_id).get("KeyCount")
    )
    assert await anyio.to_thread.run_sync(object_md5, s3, bucket, image.image_id) == md5
    source.unlink()
