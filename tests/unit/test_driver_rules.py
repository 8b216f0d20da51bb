"""The multipart driver's rules against FakeS3 (milliseconds each): resume,
sweep of stray uploads, lost answers, Complete races, server variants
(radosgw), the abort rule's truth, checkpoint temp files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from fakes.fake_s3 import FakeS3, Rule

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
    # part 3 fails for good, but only once parts 1 and 2 are stored (with two
    # at a time, one of them could still be in flight, then cancelled)
    first_two = anyio.Event()
    stored_first: set[int] = set()

    async def note(call: Any, response: Any) -> None:
        stored_first.add(call.part)
        if {1, 2} <= stored_first:
            first_two.set()

    s3.hook("upload_part", after=note, times=None)
    s3.add(Rule("upload_part", part=3, times=None, error="SlowDown", wait=first_two))
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


# --- per-part checksums: the CRC32C multipart protocol and the probe -----------------------


@pytest.fixture
def no_probe_cache() -> Any:
    from aioims.transfer import checksums

    checksums.forget_probes()
    yield checksums
    checksums.forget_probes()


def part_bytes(path: Path, number: int) -> bytes:
    with path.open("rb") as f:
        f.seek((number - 1) * 5 * MiB)
        return f.read(5 * MiB)


def completed_with(s3: FakeS3) -> list[dict[str, Any]]:
    [call] = s3.calls("complete_multipart_upload", outcome="ok")
    return list(call.params["MultipartUpload"]["Parts"])


async def test_crc32c_upload_declares_the_algorithm_and_completes_with_every_part_crc(
    source: Any, no_probe_cache: Any
) -> None:
    from fakes.fake_s3 import crc32c_b64

    path, md5 = source
    s3 = FakeS3()
    result = await upload_file(target(), path, config=config(s3, part_checksum="crc32c"))
    assert result.md5 == md5 and s3.objects[(BUCKET, KEY)].size == path.stat().st_size
    [create] = s3.calls("create_multipart_upload")
    assert create.params["ChecksumAlgorithm"] == "CRC32C"
    crcs = {n: crc32c_b64(part_bytes(path, n)) for n in range(1, 5)}
    for call in s3.calls("upload_part"):
        assert call.params["ChecksumCRC32C"] == crcs[call.part]
        assert "ContentMD5" not in call.params
    assert [(p["PartNumber"], p["ChecksumCRC32C"]) for p in completed_with(s3)] == sorted(
        crcs.items()
    )
    assert [p.checksum_crc32c for p in result.parts] == [crcs[n] for n in range(1, 5)]
    assert s3.calls("put_object") == []  # "crc32c" is not "auto": no probe


async def test_md5_upload_declares_nothing_and_completes_without_crcs(source: Any) -> None:
    path, md5 = source
    s3 = FakeS3()
    result = await upload_file(target(), path, config=config(s3))
    assert result.md5 == md5
    [create] = s3.calls("create_multipart_upload")
    assert "ChecksumAlgorithm" not in create.params
    assert all("ChecksumCRC32C" not in p for p in completed_with(s3))
    assert all("ContentMD5" in c.params for c in s3.calls("upload_part"))


async def test_crc32c_resume_after_a_crash_before_complete_resends_nothing(
    source: Any, tmp_path: Path, no_probe_cache: Any
) -> None:
    from fakes.fake_s3 import crc32c_b64

    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    crc_config = config(s3, part_checksum="crc32c")
    await crash_at("complete:before", lambda: upload_file(
        target(), path, config=crc_config, checkpoint=cp))  # fmt: skip
    assert len(s3.open_uploads()) == 1 and cp.exists()
    sent = len(s3.calls("upload_part"))
    result = await upload_file(target(), path, config=crc_config, checkpoint=cp)
    assert result.md5 == md5 and result.resumed_parts == 4
    assert len(s3.calls("upload_part")) == sent and no_part_twice(s3)
    crcs = {n: crc32c_b64(part_bytes(path, n)) for n in range(1, 5)}
    assert {p["PartNumber"]: p["ChecksumCRC32C"] for p in completed_with(s3)} == crcs
    assert s3.open_uploads() == [] and not cp.exists()


@pytest.mark.parametrize("kind", ["md5", "auto", None])
async def test_resumed_crc32c_upload_wins_over_the_config(
    source: Any, tmp_path: Path, no_probe_cache: Any, kind: str | None
) -> None:
    """The rule: a resumed upload's algorithm wins.  Created with CRC32C, it
    gets CRC32C parts even when this run is configured for Content-MD5 or
    nothing (AWS would refuse them otherwise), and no probe."""
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    await crash_at("part:after", lambda: upload_file(
        target(), path, config=config(s3, part_checksum="crc32c", max_concurrency=1),
        checkpoint=cp))  # fmt: skip
    first = len(s3.calls("upload_part"))
    assert 1 <= first < 4
    no_probe_cache.forget_probes()
    result = await upload_file(target(), path, config=config(s3, part_checksum=kind),
                               checkpoint=cp)  # fmt: skip
    assert result.md5 == md5 and no_part_twice(s3)
    later = s3.calls("upload_part")[first:]
    assert later and all("ChecksumCRC32C" in c.params and "ContentMD5" not in c.params
                         for c in later)  # fmt: skip
    assert s3.calls("put_object") == []  # known algorithm: never probed
    assert all("ChecksumCRC32C" in p for p in completed_with(s3))


async def test_resumed_plain_upload_gets_md5_parts_when_the_config_says_crc32c(
    source: Any, tmp_path: Path, no_probe_cache: Any
) -> None:
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    await crash_at("part:after", lambda: upload_file(
        target(), path, config=config(s3, max_concurrency=1), checkpoint=cp))  # fmt: skip
    first = len(s3.calls("upload_part"))
    result = await upload_file(target(), path, config=config(s3, part_checksum="crc32c"),
                               checkpoint=cp)  # fmt: skip
    assert result.md5 == md5 and no_part_twice(s3)
    later = s3.calls("upload_part")[first:]
    assert later and all("ContentMD5" in c.params and "ChecksumCRC32C" not in c.params
                         for c in later)  # fmt: skip
    assert all("ChecksumCRC32C" not in p for p in completed_with(s3))


async def test_crc32c_resume_trusts_the_journal_when_listparts_is_denied(
    source: Any, tmp_path: Path, no_probe_cache: Any
) -> None:
    """ListParts not allowed: the journal's algorithm and part CRC32Cs are
    what Complete is built from."""
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    crc_config = config(s3, part_checksum="crc32c")
    await crash_at("complete:before", lambda: upload_file(
        target(), path, config=crc_config, checkpoint=cp))  # fmt: skip
    s3.fail("list_parts", "AccessDenied", times=None)
    sent = len(s3.calls("upload_part"))
    result = await upload_file(target(), path, config=config(s3, part_checksum="md5"),
                               checkpoint=cp)  # fmt: skip
    assert result.md5 == md5 and len(s3.calls("upload_part")) == sent
    assert all(p.get("ChecksumCRC32C") for p in completed_with(s3))


async def test_crc32c_part_whose_crc_is_unknown_is_sent_again(
    source: Any, tmp_path: Path, no_probe_cache: Any
) -> None:
    """A CRC32C upload's part that neither ListParts nor the journal gives a
    CRC32C for cannot be completed (AWS needs it): it is sent again."""
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    crc_config = config(s3, part_checksum="crc32c")
    await crash_at("complete:before", lambda: upload_file(
        target(), path, config=crc_config, checkpoint=cp))  # fmt: skip

    async def drop_part_2_crc(call: Any, response: dict[str, Any]) -> None:
        for part in response.get("Parts", []):
            if part["PartNumber"] == 2:
                part.pop("ChecksumCRC32C", None)

    s3.hook("list_parts", after=drop_part_2_crc, times=None)
    document = json.loads(cp.read_text())
    for part in document["parts"]:
        if part["part_number"] == 2:
            part.pop("checksum_crc32c", None)
    cp.write_text(json.dumps(document))
    sent = len(s3.calls("upload_part"))
    result = await upload_file(target(), path, config=crc_config, checkpoint=cp)
    assert result.md5 == md5 and result.resumed_parts == 3
    assert [c.part for c in s3.calls("upload_part")[sent:]] == [2]


async def test_wrong_crc32c_is_rejected_as_a_typed_error(
    source: Any, monkeypatch: pytest.MonkeyPatch, no_probe_cache: Any
) -> None:
    from aioims.transfer import checksums

    path, _ = source
    s3 = FakeS3()
    monkeypatch.setattr(checksums, "crc32c_b64", lambda data: "AAAAAA==")  # corrupted on the way
    with pytest.raises(PartUploadError) as info:
        await upload_file(target(), path, config=config(s3, part_checksum="crc32c"))
    err = info.value
    assert err.code == "BadDigest" and err.operation == "UploadPart" and err.http_status == 400
    assert err.part_number in (1, 2, 3, 4) and not err.transient
    assert err.aborted and s3.open_uploads() == [] and (BUCKET, KEY) not in s3.objects
    assert all(c.error == "BadDigest" for c in s3.calls("upload_part", outcome="error"))


async def test_auto_on_an_endpoint_that_honours_crc32c(source: Any, no_probe_cache: Any) -> None:
    path, md5 = source
    s3 = FakeS3()
    result = await upload_file(target(), path, config=config(s3, part_checksum="auto"))
    assert result.md5 == md5
    [probe] = s3.calls("put_object")
    assert probe.error == "BadDigest" and not probe.applied and probe.body_size == 20
    ops = [c.operation for c in s3.log]
    assert ops.index("put_object") < ops.index("create_multipart_upload")
    assert s3.calls("create_multipart_upload")[0].params["ChecksumAlgorithm"] == "CRC32C"
    assert all("ChecksumCRC32C" in c.params for c in s3.calls("upload_part"))
    assert no_probe_cache.cached_probe("http://s3.test") is True
    # once per endpoint: the next transfer does not ask again
    await upload_file(target(), path, config=config(s3, part_checksum="auto"))
    assert len(s3.calls("put_object")) == 1


async def test_auto_on_an_endpoint_that_ignores_crc32c(source: Any, no_probe_cache: Any) -> None:
    """radosgw before Squid: the probe object is written (and not deleted:
    upload credentials may not delete); the upload overwrites it."""
    path, md5 = source
    s3 = FakeS3("radosgw")
    result = await upload_file(target(), path, config=config(s3, part_checksum="auto"))
    assert result.md5 == md5
    [probe] = s3.calls("put_object")
    assert probe.outcome == "ok" and probe.applied
    ops = [c.operation for c in s3.log]
    assert ops.index("put_object") < ops.index("create_multipart_upload")
    assert "ChecksumAlgorithm" not in s3.calls("create_multipart_upload")[0].params
    assert all("ContentMD5" in c.params for c in s3.calls("upload_part"))
    assert s3.objects[(BUCKET, KEY)].size == path.stat().st_size  # overwritten
    assert no_probe_cache.cached_probe("http://s3.test") is False
    await upload_file(target(), path, config=config(s3, part_checksum="auto"))
    assert len(s3.calls("put_object")) == 1


async def test_auto_probe_ambiguous_answer_falls_back_to_md5(
    source: Any, no_probe_cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path, md5 = source
    s3 = FakeS3()
    s3.fail("put_object", "InvalidRequest", times=None)
    with caplog.at_level(logging.DEBUG, logger="aioims.transfer"):
        result = await upload_file(target(), path, config=config(s3, part_checksum="auto"))
    assert result.md5 == md5
    assert any("ambiguous" in r.message and r.levelno == logging.DEBUG for r in caplog.records)
    assert no_probe_cache.cached_probe("http://s3.test") is None  # asked again next time
    assert "ChecksumAlgorithm" not in s3.calls("create_multipart_upload")[0].params
    assert all("ContentMD5" in c.params for c in s3.calls("upload_part"))


async def test_auto_probe_goes_through_the_engine_retries_and_refresh(
    source: Any, no_probe_cache: Any
) -> None:
    """The probe is an Engine request: a transient error is retried, expired
    credentials are refreshed (and the probe's answer still counts)."""
    path, md5 = source
    s3 = FakeS3()
    s3.allow("AK", token="TOKEN")
    s3.fail("put_object", "SlowDown", times=1)
    s3.fail("put_object", "ExpiredToken", nth=2, times=1)
    s3.allow("AK2", token="TOKEN2")

    async def refresh() -> UploadTarget:
        return UploadTarget(
            bucket=BUCKET, file=KEY, domain="http://s3.test", access_key="AK2", secret_key="SK",
            token="TOKEN2",
        )  # fmt: skip

    result = await upload_file(target(), path, config=config(s3, part_checksum="auto"),
                               refresh=refresh)  # fmt: skip
    assert result.md5 == md5 and result.refreshes == 1
    assert [c.error for c in s3.calls("put_object")] == ["SlowDown", "ExpiredToken", "BadDigest"]
    assert s3.calls("create_multipart_upload")[0].params["ChecksumAlgorithm"] == "CRC32C"


async def test_resumed_upload_is_never_probed(
    source: Any, tmp_path: Path, no_probe_cache: Any
) -> None:
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    await crash_at("part:after", lambda: upload_file(
        target(), path, config=config(s3, part_checksum="auto", max_concurrency=1),
        checkpoint=cp))  # fmt: skip
    assert len(s3.calls("put_object")) == 1 and len(s3.open_uploads()) == 1
    no_probe_cache.forget_probes()  # the resume runs in a "new process"
    result = await upload_file(target(), path, config=config(s3, part_checksum="auto"),
                               checkpoint=cp)  # fmt: skip
    assert result.md5 == md5 and result.resumed_parts >= 1
    assert len(s3.calls("put_object")) == 1  # the algorithm was known: no second probe
    assert all("ChecksumCRC32C" in c.params for c in s3.calls("upload_part"))
    assert no_probe_cache.cached_probe("http://s3.test") is None


async def test_probe_object_is_never_taken_for_the_finished_upload(
    source: Any, tmp_path: Path, no_probe_cache: Any
) -> None:
    """An endpoint that ignores CRC32C keeps the 20-byte probe object at the
    key until Complete.  A run dies before Complete, the upload is aborted
    outside: the next run finds the upload gone, HEADs the key, finds the
    probe object — which is not the upload — and starts over."""
    path, md5 = source
    s3 = FakeS3("radosgw")
    cp = tmp_path / "cp.json"
    await crash_at("complete:before", lambda: upload_file(
        target(), path, config=config(s3, part_checksum="auto"), checkpoint=cp))  # fmt: skip
    assert s3.objects[(BUCKET, KEY)].size == 20  # the probe object
    [upload] = s3.open_uploads()
    await s3.client().abort_multipart_upload(Bucket=BUCKET, Key=KEY, UploadId=upload.upload_id)
    result = await upload_file(target(), path, config=config(s3, part_checksum="auto"),
                               checkpoint=cp)  # fmt: skip
    assert result.md5 == md5 and result.upload_id != upload.upload_id
    assert result.resumed_parts == 0
    assert s3.objects[(BUCKET, KEY)].size == path.stat().st_size


async def test_engine_object_is_refuses_the_probe_object(no_probe_cache: Any) -> None:
    """Whatever size or ETag is asked for, the probe object is not ours."""
    from aioims.transfer._engine import Engine
    from aioims.transfer.checksums import PROBE_ETAG
    from aioims.transfer.config import plan_parts
    from aioims.transfer.events import Emitter
    from aioims.transfer.s3 import S3Clients

    s3 = FakeS3("radosgw")
    cfg = config(s3)
    async with S3Clients(target(), cfg, None, lambda count: None) as clients:
        engine = Engine(clients, cfg, plan_parts(20, cfg), Emitter(None))
        assert await engine.probe_crc32c() is False
        assert s3.objects[(BUCKET, KEY)].size == 20
        assert not await engine.object_is(20, None)
        assert not await engine.object_is(20, PROBE_ETAG)


async def test_resumed_upload_with_an_algorithm_aioims_does_not_send_starts_over(
    source: Any, tmp_path: Path, no_probe_cache: Any
) -> None:
    path, md5 = source
    s3 = FakeS3()
    cp = tmp_path / "cp.json"
    await crash_at("part:after", lambda: upload_file(
        target(), path, config=config(s3, max_concurrency=1), checkpoint=cp))  # fmt: skip
    [upload] = s3.open_uploads()
    document = json.loads(cp.read_text())
    document["checksum_algorithm"] = "SHA256"  # e.g. an upload someone else's tool created
    cp.write_text(json.dumps(document))
    result = await upload_file(target(), path, config=config(s3), checkpoint=cp)
    assert result.md5 == md5 and result.upload_id != upload.upload_id
    assert result.resumed_parts == 0 and s3.uploads[upload.upload_id].state == "aborted"
