"""Transfer engine, pure parts: config validation, the part-size adjuster,
error classification, client options, checkpoint files, events."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import anyio
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from aioims import UploadTarget, ValidationError
from aioims.transfer import (
    MAX_OBJECT_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    BytesSent,
    CompletedPart,
    EventStream,
    GiB,
    MiB,
    PartDone,
    PartStarted,
    TiB,
    TransferCompleted,
    TransferConfig,
    TransferFailed,
    TransferResult,
    adjust_part_size,
    plan_parts,
)
from aioims.transfer._engine import multipart_etag
from aioims.transfer.checkpoint import (
    Checkpoint,
    SourceIdentity,
    read_checkpoint,
    write_checkpoint,
)
from aioims.transfer.events import Emitter
from aioims.transfer.hashing import PartSlots, new_part_buffer, read_part_checksummed
from aioims.transfer.s3 import FailureKind, classify, client_kwargs, endpoint_url, user_agent

# -- config & adjuster --------------------------------------------------------


def test_s3_user_agent_is_fixed_once_and_names_the_stack() -> None:
    import aiobotocore
    import botocore

    import aioims

    config = client_kwargs(
        UploadTarget(access_key="a", secret_key="s", bucket="b", file="k", domain="http://h"),
        TransferConfig(),
    )["config"]
    # a fixed string: botocore then does not rebuild its structured
    # user agent twice per request
    assert config.user_agent == user_agent()
    assert user_agent().split()[:3] == [
        f"aioims/{aioims.__version__}",
        f"aiobotocore/{aiobotocore.__version__}",
        f"botocore/{botocore.__version__}",
    ]


def test_defaults() -> None:
    config = TransferConfig()
    assert config.part_size == 8 * MiB
    assert config.max_concurrency == 8
    assert config.multipart_threshold == 8 * MiB
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.verify_ssl is True and config.ca_bundle is None
    assert config.region == "us-east-1"
    assert config.sign_payload is False  # Content-MD5 on: no SHA-256 of bodies on the loop
    # without Content-MD5 either: botocore would hash every part on the loop
    assert TransferConfig(content_md5=False).sign_payload is False
    assert TransferConfig(content_md5=False, payload_signing=True).sign_payload is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("part_size", 0),
        ("part_size", -1),
        ("part_size", 5 * GiB + 1),
        ("part_size", 1.5),
        ("max_concurrency", 0),
        ("max_concurrency", True),
        ("multipart_threshold", 0),
        ("multipart_threshold", 5 * GiB + 1),
        ("max_attempts_per_part", 0),
        ("botocore_max_attempts", 0),
        ("max_refreshes", -1),
        ("backoff_base", -0.1),
        ("abort_timeout", 0),
        ("read_timeout", 0),
        ("request_checksum_calculation", "always"),
        ("response_checksum_validation", "nope"),
        ("region", ""),
    ],
)
def test_bad_config_is_a_validation_error(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        TransferConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


def test_part_size_raised_to_minimum() -> None:
    assert adjust_part_size(100 * MiB, 1 * MiB) == MIN_PART_SIZE
    plan = plan_parts(100 * MiB, TransferConfig(part_size=1, multipart_threshold=1))
    assert plan.part_size == MIN_PART_SIZE and plan.part_count == 20


def test_part_size_raised_for_10000_parts() -> None:
    size = 100 * GiB  # 8 MiB parts would be 12,800
    plan = plan_parts(size, TransferConfig())
    assert plan.part_count <= MAX_PARTS
    assert plan.part_size % MiB == 0 and plan.part_size >= 8 * MiB
    assert plan.part_size * (plan.part_count - 1) < size <= plan.part_size * plan.part_count


def test_largest_object() -> None:
    plan = plan_parts(MAX_OBJECT_SIZE, TransferConfig())
    assert plan.part_count <= MAX_PARTS
    assert plan.part_size <= 5 * GiB
    assert plan.part_length(plan.part_count) > 0


def test_too_large_or_negative() -> None:
    with pytest.raises(ValidationError):
        plan_parts(5 * TiB + 1, TransferConfig())
    with pytest.raises(ValidationError):
        plan_parts(-1, TransferConfig())


def test_single_put_below_threshold() -> None:
    config = TransferConfig(multipart_threshold=16 * MiB)
    assert not plan_parts(16 * MiB - 1, config).multipart
    assert plan_parts(16 * MiB, config).multipart
    empty = plan_parts(0, TransferConfig(multipart_threshold=1))
    assert not empty.multipart and empty.part_count == 1


def test_part_lengths_and_offsets() -> None:
    plan = plan_parts(12 * MiB + 3, TransferConfig(part_size=5 * MiB, multipart_threshold=1))
    assert plan.part_count == 3
    assert [plan.part_length(n) for n in (1, 2, 3)] == [5 * MiB, 5 * MiB, 2 * MiB + 3]
    assert [plan.part_offset(n) for n in (1, 2, 3)] == [0, 5 * MiB, 10 * MiB]
    with pytest.raises(IndexError):
        plan.part_length(4)


async def test_validation_error_before_any_request(tmp_path: Path) -> None:
    """A too-large file fails before a connection is even attempted."""
    from aioims.transfer import upload_file

    big = tmp_path / "huge.img"
    with open(big, "wb") as f:
        f.truncate(5 * TiB + 1)  # sparse
    target = UploadTarget(
        access_key="k", secret_key="s", bucket="b", file="f", domain="http://192.0.2.1:9"
    )
    with anyio.fail_after(5), pytest.raises(ValidationError):
        await upload_file(target, big)
    empty_target = UploadTarget(access_key="k", secret_key="s", bucket="", file="f", domain="x")
    with pytest.raises(ValidationError):
        await upload_file(empty_target, big)


# -- error classification & client options ------------------------------------


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "UploadPart",
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("InternalError", 500), FailureKind.TRANSIENT),
        (_client_error("SlowDown", 503), FailureKind.TRANSIENT),
        (_client_error("RequestTimeout", 400), FailureKind.TRANSIENT),
        (_client_error("500", 500), FailureKind.TRANSIENT),
        (_client_error("TooManyRequests", 429), FailureKind.TRANSIENT),
        (_client_error("ExpiredToken", 400), FailureKind.CREDENTIALS),
        (_client_error("InvalidAccessKeyId", 403), FailureKind.CREDENTIALS),
        (_client_error("InvalidToken", 400), FailureKind.CREDENTIALS),
        (_client_error("TokenRefreshRequired", 400), FailureKind.CREDENTIALS),
        (_client_error("ExpiredTokenException", 400), FailureKind.CREDENTIALS),
        (_client_error("AccessDenied", 403), FailureKind.PERMANENT),
        (_client_error("NoSuchUpload", 404), FailureKind.PERMANENT),
        (_client_error("BadDigest", 400), FailureKind.PERMANENT),
        (EndpointConnectionError(endpoint_url="http://x"), FailureKind.TRANSIENT),
        (ConnectionClosedError(endpoint_url="http://x"), FailureKind.TRANSIENT),
        (ReadTimeoutError(endpoint_url="http://x"), FailureKind.TRANSIENT),
        (aiohttp.ServerDisconnectedError(), FailureKind.TRANSIENT),
        (ConnectionResetError(), FailureKind.TRANSIENT),
        (TimeoutError(), FailureKind.TRANSIENT),
        (SSLError(endpoint_url="https://x", error="bad cert"), FailureKind.FATAL),
    ],
)
def test_classify(exc: BaseException, kind: FailureKind) -> None:
    failure = classify(exc)
    assert failure is not None and failure.kind is kind


def test_classify_leaves_bugs_alone() -> None:
    assert classify(TypeError("bug")) is None
    assert classify(ValueError("bug")) is None


def test_endpoint_url() -> None:
    assert endpoint_url("http://10.0.0.5:9000/") == "http://10.0.0.5:9000"
    assert endpoint_url("10.0.0.5:9000") == "https://10.0.0.5:9000"
    with pytest.raises(ValidationError):
        endpoint_url("")


def test_client_kwargs() -> None:
    target = UploadTarget(
        access_key="AK", secret_key="SK", token="", bucket="b", file="f", domain="https://s3"
    )
    kwargs = client_kwargs(target, TransferConfig(max_concurrency=3, region="cn-1"))
    assert kwargs["aws_session_token"] is None  # "" -> no token
    assert kwargs["verify"] is True
    assert kwargs["region_name"] == "cn-1"
    config = kwargs["config"]
    assert config.s3["addressing_style"] == "path"
    assert config.s3["payload_signing_enabled"] is False
    assert config.max_pool_connections == 5
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    with_token = UploadTarget(
        access_key="AK", secret_key="SK", token="TOK", bucket="b", file="f", domain="https://s3"
    )
    assert client_kwargs(with_token, TransferConfig())["aws_session_token"] == "TOK"
    assert client_kwargs(target, TransferConfig(ca_bundle="/ca.pem"))["verify"] == "/ca.pem"
    assert (
        client_kwargs(target, TransferConfig(verify_ssl=False, ca_bundle="/x"))["verify"] is False
    )


def test_multipart_etag() -> None:
    import hashlib

    parts = [CompletedPart(1, '"' + hashlib.md5(b"a").hexdigest() + '"', 1)]
    parts.append(CompletedPart(2, '"' + hashlib.md5(b"b").hexdigest() + '"', 1))
    joined = hashlib.md5(hashlib.md5(b"a").digest() + hashlib.md5(b"b").digest()).hexdigest()
    assert multipart_etag(parts) == f'"{joined}-2"'
    assert multipart_etag([CompletedPart(1, '"not-hex"', 1)]) is None


# -- part buffers -----------------------------------------------------------------


def test_read_part_and_recycling(tmp_path: Path) -> None:
    import base64
    import hashlib

    data = os.urandom(3000)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        body, params = read_part_checksummed(fd, 1000, 1000, "md5")
        assert body.getvalue() == data[1000:2000]
        b64 = base64.b64encode(hashlib.md5(data[1000:2000]).digest()).decode()
        assert params == {"ContentMD5": b64}
        again, params = read_part_checksummed(fd, 2000, 1000, None, body)
        assert params == {}
        assert again is body and body.getvalue() == data[2000:3000]
        from aioims.transfer import SourceChangedError

        with pytest.raises(SourceChangedError):
            read_part_checksummed(fd, 2500, 1000, None)  # past the end: the file "shrank"
    finally:
        os.close(fd)


async def test_part_slots_recycle_full_size_buffers() -> None:
    slots = PartSlots(2, 10)
    await slots.acquire(1, 2)
    body = new_part_buffer(10)
    slots.attach(1, body)
    slots.release(1)
    assert slots.recycled(10) is None  # still one user (the hasher)
    slots.release(1)
    assert slots.recycled(10) is body
    assert slots.recycled(3) is None
    await slots.acquire(2, 1)
    await slots.acquire(3, 1)  # two slots: both free again
    with anyio.move_on_after(0.05) as scope:
        await slots.acquire(4, 1)
    assert scope.cancelled_caught  # a third would exceed the limit
    assert isinstance(new_part_buffer(0), io.BytesIO)


# -- checkpoint files -------------------------------------------------------------


def _checkpoint() -> Checkpoint:
    return Checkpoint(
        bucket="b",
        key="k",
        image_id="img-1",
        upload_id="U1",
        part_size=5 * MiB,
        size=12 * MiB,
        source=SourceIdentity("/tmp/x", 12 * MiB, 123),
        parts={2: CompletedPart(2, '"e2"', 5 * MiB), 1: CompletedPart(1, '"e1"', 5 * MiB)},
    )


def test_checkpoint_roundtrip_mode_and_content(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    write_checkpoint(path, _checkpoint())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["upload_id"] == "U1" and data["image_id"] == "img-1"
    assert [p["part_number"] for p in data["parts"]] == [1, 2]
    assert set(data) == {
        "version", "kind", "bucket", "key", "image_id", "upload_id",
        "part_size", "size", "source", "parts", "completed", "etag", "updated_at",
        "checksum_algorithm",
    }  # fmt: skip
    assert data["checksum_algorithm"] is None
    assert all("checksum_crc32c" not in p for p in data["parts"])  # only when known
    loaded = read_checkpoint(path)
    assert loaded is not None
    assert loaded.parts == _checkpoint().parts and loaded.source == _checkpoint().source
    # Atomic: a second write replaces it, leaving no temp files behind.
    write_checkpoint(path, _checkpoint())
    assert [p.name for p in tmp_path.iterdir()] == ["cp.json"]


def test_checkpoint_keeps_the_checksum_algorithm_and_part_crc32cs(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    state = _checkpoint()
    state.checksum_algorithm = "CRC32C"
    state.parts = {1: CompletedPart(1, '"e1"', 5 * MiB, "AAAAAA==")}
    write_checkpoint(path, state)
    data = json.loads(path.read_text())
    assert data["checksum_algorithm"] == "CRC32C"
    assert data["parts"][0]["checksum_crc32c"] == "AAAAAA=="
    loaded = read_checkpoint(path)
    assert loaded is not None and loaded.checksum_algorithm == "CRC32C"
    assert loaded.parts == state.parts
    # A file of an older version (no such keys): no algorithm declared, no CRCs.
    del data["checksum_algorithm"]
    del data["parts"][0]["checksum_crc32c"]
    path.write_text(json.dumps(data))
    old = read_checkpoint(path)
    assert old is not None and old.checksum_algorithm is None
    assert old.parts[1].checksum_crc32c is None


def test_checkpoint_unreadable_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert read_checkpoint(tmp_path / "missing.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert read_checkpoint(bad) is None
    bad.write_text(json.dumps({"version": 99}))
    assert read_checkpoint(bad) is None


# -- events -------------------------------------------------------------------------


def _result() -> TransferResult:
    return TransferResult(upload_id=None, parts=[], md5=None, size=0)


async def test_event_stream_merges_bytes_and_keeps_the_rest() -> None:
    stream = EventStream(max_buffer=2)
    stream.publish(PartStarted(1, 10))
    stream.publish(BytesSent(1, 100))
    for total in range(2, 50):  # buffer full: merged, only the newest kept
        stream.publish(BytesSent(total, 100))
    for n in range(1, 20):  # never dropped
        stream.publish(PartDone(n, 10, f'"e{n}"'))
    stream.publish(BytesSent(99, 100))
    stream.publish(TransferCompleted(_result()))
    received = [event async for event in stream]
    assert [e.part_number for e in received if isinstance(e, PartDone)] == list(range(1, 20))
    totals = [e.bytes_sent_total for e in received if isinstance(e, BytesSent)]
    assert totals == sorted(totals) and totals[-1] == 99 and 49 in totals
    assert len(totals) < 10 and stream.merged > 0
    assert isinstance(received[0], PartStarted) and isinstance(received[-1], TransferCompleted)


async def test_event_stream_concurrent_consumer_and_close() -> None:
    stream = EventStream(max_buffer=4, close_on_terminal=False)
    got: list[object] = []

    async def consume() -> None:
        async for event in stream:
            got.append(event)
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        for n in range(30):
            stream.publish(PartDone(n, 1, "e"))
            if n % 5 == 0:
                await anyio.sleep(0)
        stream.publish(TransferFailed(RuntimeError("x")))
        stream.publish(PartDone(99, 1, "e"))  # not closed by the terminal event
        stream.close()
        stream.publish(PartDone(100, 1, "e"))  # after close: ignored
    assert len(got) == 32


async def test_emitter_callback_errors_are_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[object] = []

    def bad(event: object) -> None:
        seen.append(event)
        raise RuntimeError("boom")

    caplog.set_level(logging.WARNING, logger="aioims.transfer")
    emitter = Emitter(bad)
    emitter.emit(PartStarted(1, 1))
    emitter.emit(PartStarted(2, 1))
    assert len(seen) == 2
    assert sum("progress callback raised" in r.getMessage() for r in caplog.records) == 2

    async_seen: list[object] = []

    async def slow(event: object) -> None:
        await anyio.sleep(0.001)
        async_seen.append(event)
        raise RuntimeError("boom")

    async with anyio.create_task_group() as tg:
        emitter = Emitter(slow)
        emitter.start(tg)
        for n in range(5):
            emitter.emit(PartStarted(n, 1))
        await emitter.aclose(5)
    assert len(async_seen) == 5
    with pytest.raises(TypeError):
        Emitter(42)  # type: ignore[arg-type]


def test_expiry_helpers() -> None:
    from aioims.transfer.s3 import _seconds_left

    soon = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 25 < _seconds_left(soon) <= 30
    naive = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(seconds=30)
    assert 25 < _seconds_left(naive) <= 30
