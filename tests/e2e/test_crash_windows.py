"""Every crash point and lost answer of an upload, stopped exactly there.

The SDK path (``Uploader`` with a checkpoint) is killed in-process at each
named point (:class:`crash_harness.Victim`: the thread freezes inside its
event loop, so no cleanup runs — a SIGKILL as far as the service and the
journal can tell), then the same upload runs again.  After the re-run:
exactly one image of that name, ``active``, checksum = the file's MD5, no
multipart upload left in the bucket, and no part sent again that S3 held.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from crash_harness import Victim

from aioims import HeaderAuth, ImageStatus, IMSSession
from aioims.testing import REGION, ims, ims_emulator  # noqa: F401 - fixtures
from aioims.transfer import MiB, PartDone, PartStarted, TransferConfig, TransferStarted
from aioims.uploader import Uploader

CONFIG = TransferConfig(part_size=5 * MiB, max_concurrency=2, multipart_threshold=5 * MiB)
SIZE = 16 * MiB + 4321  # 4 parts


def spec(emulator: Any, name: str) -> dict[str, Any]:
    alice = emulator.user("alice")
    return {
        "name": name, "disk_format": "qcow2", "min_disk": 10, "min_ram": 512,
        "image_type": "os_image", "instruction": "64-bits", "cpu_arch": "x86",
        "os_type": "linux", "platform": "CentOS", "visibility": "private", "usage": "ecs",
        "department_id": alice.department_id, "tenant_id": alice.tenant_id,
    }  # fmt: skip


def make_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def s3(ims_emulator: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=ims_emulator.state()["s3Endpoint"], aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip


def open_uploads(s3: Any, image_id: str) -> list[Any]:
    """The multipart uploads still open for the image's object (its key is the id)."""
    uploads = []
    for bucket in s3.list_buckets()["Buckets"]:
        found = s3.list_multipart_uploads(Bucket=bucket["Name"]).get("Uploads", [])
        uploads += [u for u in found if u["Key"] == image_id]
    return uploads


async def images_named(ims: IMSSession, name: str) -> list[Any]:
    found = []
    async for image in ims.iter_private_images():
        if image.name == name and image.status != ImageStatus.DELETED:
            found.append(image)
    return found


def session_for(emulator: Any) -> IMSSession:
    return IMSSession(
        endpoint=emulator.url, region=REGION,
        auth=HeaderAuth({"Authorization": f"Bearer {emulator.token('alice')}"}),
    )  # fmt: skip


#: Every point, and whether the re-run may send parts at all.
POINTS = [
    ("create:before", True),
    ("create:after", True),
    ("prepare:after", True),
    ("multipart-create:after", True),
    ("part:after#2", True),
    ("complete:before", False),
    ("complete:after", False),
    ("done:before", False),
    ("done:after", False),
    ("wait:after", False),
]


@pytest.mark.parametrize(("point", "may_send"), POINTS, ids=[p for p, _ in POINTS])
async def test_sdk_crash_then_rerun(
    point: str, may_send: bool, ims: IMSSession, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    name = f"crash-{point.replace(':', '-').replace('#', '-')}-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "disk.qcow2"
    md5 = make_file(source, SIZE)
    checkpoint = tmp_path / "cp" / "upload.json"
    first: list[Any] = []

    async def victim_body() -> Any:
        async with session_for(ims_emulator) as victim_ims:
            uploader = Uploader(victim_ims, config=CONFIG, progress=first.append,
                                poll_interval=0.05)  # fmt: skip
            return await uploader.upload(source, spec(ims_emulator, name), checkpoint=checkpoint)

    victim = Victim(point, victim_body)
    await victim.crash()
    held_before = {e.part_number for e in list(first) if isinstance(e, PartDone)}

    second: list[Any] = []
    uploader = Uploader(ims, config=CONFIG, progress=second.append, poll_interval=0.05)
    image = await uploader.upload(source, spec(ims_emulator, name), checkpoint=checkpoint)

    assert image.status == ImageStatus.ACTIVE and image.checksum == md5
    found = await images_named(ims, name)
    assert [i.image_id for i in found] == [image.image_id], "exactly one image"
    assert open_uploads(s3, image.image_id) == [], "no multipart upload left"
    sent_again = {e.part_number for e in second if isinstance(e, PartStarted)}
    assert sent_again.isdisjoint(held_before), "a part S3 held was sent again"
    if not may_send:
        assert sent_again == set(), f"nothing should be re-sent after {point}"
    assert not checkpoint.exists(), "the journal is gone once the image is verified"
    started = [e for e in second if isinstance(e, TransferStarted)]
    if point == "part:after#2":
        assert started and started[0].resumed_parts >= 2


async def test_lost_create_answer_adopts_the_created_image(
    ims: IMSSession, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    """The create reached the service but its answer was lost: the image is
    adopted (it did not exist before the intent), not created twice."""
    name = f"lost-create-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "disk.qcow2"
    md5 = make_file(source, 6 * MiB)
    ims_emulator.set_faults({"rules": [
        {"endpoint": "create_private_image", "drop": True, "when": "after", "times": 1}]})
    try:
        image = await Uploader(ims, config=CONFIG, poll_interval=0.05).upload(
            source, spec(ims_emulator, name))  # fmt: skip
    finally:
        ims_emulator.clear_faults()
    assert image.checksum == md5
    assert [i.image_id for i in await images_named(ims, name)] == [image.image_id]


async def test_adoption_never_takes_an_older_same_name_image(
    ims: IMSSession, ims_emulator: Any, tmp_path: Path
) -> None:
    """Same-name images that existed before the create are never adopted."""
    name = f"older-{uuid.uuid4().hex[:6]}"
    older = await ims.create_private_image(**spec(ims_emulator, name))
    source = tmp_path / "disk.qcow2"
    make_file(source, 1 * MiB)
    ims_emulator.set_faults({"rules": [
        {"endpoint": "create_private_image", "drop": True, "when": "after", "times": 1}]})
    try:
        image = await Uploader(ims, config=CONFIG, poll_interval=0.05).upload(
            source, spec(ims_emulator, name))  # fmt: skip
    finally:
        ims_emulator.clear_faults()
    assert image.image_id != older.image_id
    assert (await ims.get_image(older.image_id)).status == ImageStatus.QUEUED
    assert len(await images_named(ims, name)) == 2


async def test_lost_upload_done_answer_is_not_a_failure(
    ims: IMSSession, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    name = f"lost-done-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "disk.qcow2"
    md5 = make_file(source, 11 * MiB)
    ims_emulator.set_faults({"rules": [
        {"endpoint": "upload_done", "drop": True, "when": "after", "times": 1}]})
    try:
        image = await Uploader(ims, config=CONFIG, poll_interval=0.05).upload(
            source, spec(ims_emulator, name), checkpoint=tmp_path / "cp.json")  # fmt: skip
    finally:
        ims_emulator.clear_faults()
    assert image.checksum == md5 and image.status == ImageStatus.ACTIVE
    assert [i.image_id for i in await images_named(ims, name)] == [image.image_id]
    assert open_uploads(s3, image.image_id) == []


async def test_checkpoint_of_other_metadata_is_a_clear_error(
    ims: IMSSession, ims_emulator: Any, tmp_path: Path
) -> None:
    from aioims import JournalMismatchError

    name = f"meta-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "disk.qcow2"
    make_file(source, 11 * MiB)
    checkpoint = tmp_path / "cp.json"

    async def victim_body() -> Any:
        async with session_for(ims_emulator) as victim_ims:
            return await Uploader(victim_ims, config=CONFIG).upload(
                source, spec(ims_emulator, name), checkpoint=checkpoint)  # fmt: skip

    await Victim("part:after", victim_body).crash()
    other = {**spec(ims_emulator, name), "min_ram": 2048}
    with pytest.raises(JournalMismatchError) as info:
        await Uploader(ims, config=CONFIG).upload(source, other, checkpoint=checkpoint)
    assert "image metadata" in str(info.value) and checkpoint.exists()
    # nothing was sent: still the one queued image of the crashed run
    assert [i.status for i in await images_named(ims, name)] == [ImageStatus.QUEUED]


async def test_lost_create_multipart_answer_leaves_no_orphan(
    ims: IMSSession, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    """CreateMultipartUpload took effect but its answer was lost: the retry
    opens a second upload; the sweep after Complete aborts the first."""
    name = f"lost-cmu-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "disk.qcow2"
    md5 = make_file(source, 11 * MiB)
    ims_emulator.set_s3_faults({"rules": [
        {"operation": "CreateMultipartUpload", "action": "reset", "when": "after", "times": 1}]})
    try:
        image = await Uploader(ims, config=CONFIG, poll_interval=0.05).upload(
            source, spec(ims_emulator, name))  # fmt: skip
    finally:
        ims_emulator.clear_s3_faults()
    assert image.checksum == md5
    assert open_uploads(s3, image.image_id) == []


async def test_abort_impossible_names_the_upload_in_upload_done_failed(
    ims: IMSSession, ims_emulator: Any, s3: Any, tmp_path: Path
) -> None:
    """A part fails for good and AbortMultipartUpload fails too: the service
    is told ``upload-done(failed, uploadId)`` and aborts the upload itself."""
    from aioims import UploadFailedError

    name = f"no-abort-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "disk.qcow2"
    make_file(source, 11 * MiB)
    ims_emulator.set_s3_faults({"rules": [
        {"operation": "UploadPart", "part_numbers": [2], "action": "error", "status": 400,
         "code": "InvalidArgument", "times": None},
        {"operation": "AbortMultipartUpload", "action": "error", "status": 500,
         "code": "InternalError", "times": None}]})  # fmt: skip
    config = TransferConfig(part_size=5 * MiB, max_concurrency=2, multipart_threshold=5 * MiB,
                            backoff_base=0.01, abort_timeout=5)  # fmt: skip
    try:
        with pytest.raises(UploadFailedError) as info:
            await Uploader(ims, config=config).upload(source, spec(ims_emulator, name))
    finally:
        ims_emulator.clear_s3_faults()
    assert info.value.stage == "transfer" and info.value.upload_id
    assert not info.value.resumable
    [image] = await images_named(ims, name)
    assert image.status == ImageStatus.KILLED
    assert open_uploads(s3, image.image_id) == []
