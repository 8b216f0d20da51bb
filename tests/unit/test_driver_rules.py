"""The multipart driver's rules against FakeS3 (milliseconds each): resume,
sweep of stray uploads, lost answers, Complete races, server variants
(radosgw), the abort rule's truth, checkpoint temp files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from fakes.fake_s3 import FakeS3

from aioims import UploadTarget, hooks
from aioims.transfer import (
    MiB,
    PartUploadError,
    S3TransferError,
    TransferConfig,
    upload_file,
)

BUCKET, KEY = "bucket", "img-abc"


def target() -> UploadTarget:
    return UploadTarget(
        bucket=BUCKET, file=KEY, domain="http://s3.test", access_key="AK", secret_key="SK",
        token="TOKEN",
    )  # fmt: skip


def config(s3: FakeS3, **kw: Any) -> TransferConfig:
    base: dict[str, Any] = {
        "part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "max_concurrency": 2,
        "backoff_base": 0.0, "backoff_max": 0.0, "s3_client_factory": s3.client_factory,
        "checkpoint_interval": 0.0,
    }  # fmt: skip
    base.update(kw)
    return TransferConfig(**base)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, str]:
    data = os.urandom(16 * MiB + 123)  # 4 parts
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path, hashlib.md5(data).hexdigest()


def no_part_twice(s3: FakeS3) -> bool:
    sends = s3.part_sends()
    return not sends or max(sends.values()) == 1


class Crash(BaseException):
    pass


def _has_crash(exc: BaseException) -> bool:
    if isinstance(exc, Crash):
        return True
    inner = getattr(exc, "exceptions", None)  # an exception group (3.11+ or the backport)
    return inner is not None and any(_has_crash(e) for e in inner)


async def crash_at(point: str, body: Any) -> None:
    """Run ``body`` until the hook reaches ``point`` and stop it there with
    an exception the library treats like a cancellation (with a journal:
    nothing aborted, the journal flushed) — the state a crash leaves, as far
    as S3 and the journal can tell."""

    async def hook(name: str, info: dict[str, Any]) -> None:
        if name == point:
            raise Crash

    with hooks.installed(hook):
        try:
            await body()
        except BaseException as exc:
            if not _has_crash(exc):
                raise
        else:
            raise AssertionError(f"{point} was not reached")


async def test_resume_sends_only_missing_parts_once(source: Any, tmp_path: Path) -> None:
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    s3.fail("upload_part", "SlowDown", part=3, times=None)
    with pytest.raises(PartUploadError) as info:
        await upload_file(target(), path, config=config(s3, max_attempts_per_part=2),
                          checkpoint=cp)  # fmt: skip
    assert info.value.resumable and not info.value.aborted and cp.exists()
    s3.rules.clear()
    result = await upload_file(target(), path, config=config(s3), checkpoint=cp)
    assert result.md5 == md5 and result.resumed_parts >= 2
    stored = [c.part for c in s3.calls("upload_part", outcome="ok")]
    assert sorted(stored) == [1, 2, 3, 4]  # every part stored exactly once
    assert s3.objects[(BUCKET, KEY)].size == path.stat().st_size
    assert s3.open_uploads() == [] and not cp.exists()


async def test_radosgw_listparts_nosuchkey_restarts_instead_of_sticking(
    source: Any, tmp_path: Path
) -> None:
    """An upload aborted outside (radosgw: ListParts -> 404 NoSuchKey) must
    not leave the resume stuck for good."""
    path, md5 = source
    s3 = FakeS3("radosgw")
    cp = tmp_path / "cp.json"
    s3.fail("upload_part", "SlowDown", part=4, times=None)
    with pytest.raises(PartUploadError):
        await upload_file(target(), path, config=config(s3, max_attempts_per_part=1),
                          checkpoint=cp)  # fmt: skip
    [upload] = s3.open_uploads()
    client = s3.client()
    await client.abort_multipart_upload(Bucket=BUCKET, Key=KEY, UploadId=upload.upload_id)
    s3.rules.clear()
    result = await upload_file(target(), path, config=config(s3), checkpoint=cp)
    assert result.md5 == md5 and result.upload_id != upload.upload_id
    assert s3.open_uploads() == []


async def test_radosgw_empty_complete_etag_is_computed(source: Any) -> None:
    path, _ = source
    s3 = FakeS3("radosgw")
    result = await upload_file(target(), path, config=config(s3))
    assert result.etag and result.etag.strip('"')
    assert result.etag == s3.objects[(BUCKET, KEY)].etag


async def test_lost_complete_answer_is_success_without_resending(source: Any) -> None:
    path, md5 = source
    s3 = FakeS3()
    s3.lose_response("complete_multipart_upload")
    result = await upload_file(target(), path, config=config(s3))
    assert result.md5 == md5 and result.etag == s3.objects[(BUCKET, KEY)].etag
    assert no_part_twice(s3) and s3.open_uploads() == []


async def test_radosgw_complete_of_an_aborted_upload_is_not_retried_blindly(
    source: Any,
) -> None:
    """radosgw answers 500 InternalError to completing an aborted upload:
    the driver looks (ListParts gone, no object) instead of retrying it as
    transient, and reports that the upload is gone."""
    path, _ = source
    s3 = FakeS3("radosgw")

    async def abort_it(call: Any) -> None:
        client = s3.client()
        await client.abort_multipart_upload(Bucket=BUCKET, Key=KEY,
                                            UploadId=call.params["UploadId"])  # fmt: skip

    s3.hook("complete_multipart_upload", before=abort_it, times=1)
    with pytest.raises(S3TransferError) as info:
        await upload_file(target(), path, config=config(s3, max_attempts_per_part=5))
    assert info.value.code == "NoSuchUpload"
    assert len(s3.calls("complete_multipart_upload")) == 1


async def test_lost_create_multipart_answer_leaves_no_orphan(source: Any) -> None:
    path, md5 = source
    s3 = FakeS3()
    s3.lose_response("create_multipart_upload")
    result = await upload_file(target(), path, config=config(s3))
    assert result.md5 == md5
    assert len(s3.calls("create_multipart_upload")) == 2
    assert s3.open_uploads() == []  # the stray one was swept after Complete


async def test_crash_before_the_upload_id_is_recorded_is_swept(
    source: Any, tmp_path: Path
) -> None:
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    await crash_at("multipart-create:after", lambda: upload_file(
        target(), path, config=config(s3, abort_on_cancel=False), checkpoint=cp))  # fmt: skip
    assert len(s3.open_uploads()) == 1 and not cp.exists()
    result = await upload_file(target(), path, config=config(s3), checkpoint=cp)
    assert result.md5 == md5 and s3.open_uploads() == []
    assert len(s3.calls("abort_multipart_upload")) == 1


async def test_crash_after_complete_resends_nothing(source: Any, tmp_path: Path) -> None:
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    await crash_at("complete:after", lambda: upload_file(
        target(), path, config=config(s3), checkpoint=cp))  # fmt: skip
    assert cp.exists() and (BUCKET, KEY) in s3.objects
    before = len(s3.calls("upload_part"))
    result = await upload_file(target(), path, config=config(s3), checkpoint=cp)
    assert result.md5 == md5 and len(s3.calls("upload_part")) == before
    assert s3.open_uploads() == [] and not cp.exists()


async def test_cancel_during_complete_never_claims_aborted(
    source: Any, tmp_path: Path
) -> None:
    """Complete reaches the server, then the task is cancelled while the
    answer is on its way: the object exists, so the outcome is not
    'aborted' (issue: 2 of 12 cancels reported aborted=True)."""
    path, _ = source
    s3 = FakeS3()
    gate = anyio.Event()
    rule = s3.hold_response("complete_multipart_upload", gate)
    events: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await upload_file(target(), path, config=config(s3), progress=events.append)

        tg.start_soon(run)
        await rule.reached.wait()
        tg.cancel_scope.cancel()
    from aioims.transfer import TransferFailed

    [failed] = [e for e in events if isinstance(e, TransferFailed)]
    assert failed.cancelled and not failed.aborted
    assert (BUCKET, KEY) in s3.objects


async def test_checkpoint_temp_files_of_a_crashed_writer_are_cleaned(
    source: Any, tmp_path: Path
) -> None:
    path, _ = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    stale = tmp_path / f".{cp.name}.999999999.deadbeef.tmp"  # no such pid
    stale.write_text("{")
    await upload_file(target(), path, config=config(s3), checkpoint=cp)
    assert not stale.exists()
