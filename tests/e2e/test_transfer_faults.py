"""Transfer engine under faults, through the S3 front (the credential-checking,
fault-injecting proxy of aioims.emulator.s3front) in front of moto:
retries, definitive failures and aborts, credential expiry and refresh,
cancellation, TLS options."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from aioims import UploadTarget
from aioims.emulator.s3front import FaultRule, S3Front
from aioims.transfer import (
    CredentialsExpiredError,
    CredentialsRefreshed,
    MiB,
    PartDone,
    PartRetried,
    PartUploadError,
    S3TransferError,
    TransferConfig,
    TransferEvent,
    TransferFailed,
    upload_file,
)

pytestmark = pytest.mark.timeout(120)

FAST = TransferConfig(part_size=5 * MiB, max_concurrency=4, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
async def front(s3_url: str) -> AsyncIterator[S3Front]:
    async with S3Front(upstream=s3_url) as proxy:
        yield proxy


def front_target(front: S3Front, bucket: str, key: str | None = None) -> UploadTarget:
    creds = front.issue_credentials(lifetime=3600.0)
    return UploadTarget(
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        token=creds.token,
        bucket=bucket,
        file=key or f"img-{uuid.uuid4().hex[:8]}",
        domain=front.url,
        expires_at=creds.expires_at,
    )


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(23 * MiB)  # 5 parts of 5 MiB
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path, data


def stored_md5(boto3_s3: Any, target: UploadTarget) -> str:
    body = boto3_s3.get_object(Bucket=target.bucket, Key=target.file)["Body"].read()
    return hashlib.md5(body).hexdigest()


def uploads_left(boto3_s3: Any, bucket: str) -> list[Any]:
    return list(boto3_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


async def test_transient_faults_are_retried(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes]
) -> None:
    path, data = image
    front.faults.add(FaultRule(operation="UploadPart", part_numbers={2}, status=500, times=1))
    front.faults.add(
        FaultRule(operation="UploadPart", part_numbers={3}, status=503, code="SlowDown", times=1)
    )
    front.faults.add(FaultRule(operation="UploadPart", part_numbers={4}, action="reset", times=2))
    front.faults.add(FaultRule(operation="CompleteMultipartUpload", status=500, times=1))
    target = front_target(front, bucket)
    events: list[TransferEvent] = []
    result = await upload_file(target, path, config=FAST, progress=events.append)
    assert result.md5 == hashlib.md5(data).hexdigest() == stored_md5(boto3_s3, target)
    retried = {e.part_number: e for e in events if isinstance(e, PartRetried)}
    assert set(retried) == {2, 3, 4}
    assert retried[2].code == "InternalError" and retried[3].code == "SlowDown"
    assert retried[2].attempt == 1 and retried[2].delay > 0
    assert front.stats.count("UploadPart") >= 8
    assert front.stats.count("CompleteMultipartUpload") == 2
    assert not uploads_left(boto3_s3, bucket)


async def test_part_failing_for_good_aborts(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes]
) -> None:
    path, _ = image
    front.faults.add(FaultRule(operation="UploadPart", part_numbers={3}, status=500, times=None))
    target = front_target(front, bucket)
    events: list[TransferEvent] = []
    config = TransferConfig(part_size=5 * MiB, max_attempts_per_part=3, backoff_base=0.01)
    with pytest.raises(PartUploadError) as info:
        await upload_file(target, path, config=config, progress=events.append)
    err = info.value
    assert err.part_number == 3 and err.attempts == 3 and err.code == "InternalError"
    assert err.http_status == 500 and err.transient and err.operation == "UploadPart"
    assert err.aborted and not err.resumable and err.upload_id
    assert front.stats.count("AbortMultipartUpload") == 1
    assert not uploads_left(boto3_s3, bucket)
    failed = events[-1]
    assert isinstance(failed, TransferFailed) and failed.error is err and failed.aborted
    assert [e.attempt for e in events if isinstance(e, PartRetried)] == [1, 2]


async def test_non_retryable_error_gets_one_retry(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes]
) -> None:
    path, _ = image
    front.faults.add(
        FaultRule(
            operation="UploadPart", part_numbers={2}, status=403, code="AccessDenied", times=None
        )
    )
    target = front_target(front, bucket)
    with pytest.raises(PartUploadError) as info:
        await upload_file(target, path, config=FAST)
    assert info.value.code == "AccessDenied" and info.value.attempts == 2
    assert not info.value.transient and info.value.aborted
    assert not uploads_left(boto3_s3, bucket)


async def test_failing_create_is_typed(
    front: S3Front, bucket: str, image: tuple[Path, bytes]
) -> None:
    path, _ = image
    front.faults.add(FaultRule(operation="CreateMultipartUpload", status=500, times=None))
    config = TransferConfig(part_size=5 * MiB, max_attempts_per_part=2, backoff_base=0.01)
    with pytest.raises(S3TransferError) as info:
        await upload_file(front_target(front, bucket), path, config=config)
    assert info.value.operation == "CreateMultipartUpload" and info.value.attempts == 2
    assert not isinstance(info.value, PartUploadError)


@pytest.mark.parametrize("how", ["expire", "revoke"])
async def test_credentials_refreshed_mid_upload(
    front: S3Front,
    bucket: str,
    boto3_s3: Any,
    image: tuple[Path, bytes],
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioims.transfer")
    path, data = image
    target = front_target(front, bucket)
    secrets = [target.secret_key, target.token]
    if how == "expire":  # part 3 expires the credentials in use: ExpiredToken from then on
        front.faults.add(FaultRule(operation="UploadPart", part_numbers={3}, action="expire"))

    def on_event(event: TransferEvent) -> None:
        if how == "revoke" and isinstance(event, PartDone) and event.part_number <= 2:
            front.revoke(target.access_key)  # InvalidAccessKeyId from then on

    calls = 0

    async def refresh() -> UploadTarget:
        nonlocal calls
        calls += 1
        fresh = front_target(front, bucket, key=target.file)
        secrets.extend([fresh.secret_key, fresh.token])
        return fresh

    events: list[TransferEvent] = []

    def progress(event: TransferEvent) -> None:
        events.append(event)
        on_event(event)

    result = await upload_file(target, path, config=FAST, progress=progress, refresh=refresh)
    assert result.md5 == hashlib.md5(data).hexdigest() == stored_md5(boto3_s3, target)
    assert calls >= 1 and result.refreshes == calls
    assert [e.count for e in events if isinstance(e, CredentialsRefreshed)] == list(
        range(1, calls + 1)
    )
    if how == "expire":
        assert [hit.action for hit in front.stats.faults] == ["expire"]
    else:
        assert front.stats.rejected["InvalidAccessKeyId"] >= 1
    # Credential rejections are not attempts: no PartRetried for them.
    assert not [e for e in events if isinstance(e, PartRetried)]
    assert caplog.records  # DEBUG per part
    for secret in secrets:
        assert secret and secret not in caplog.text


async def test_expired_without_refresh_raises(
    front: S3Front, bucket: str, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, _ = image
    front.faults.add(FaultRule(operation="UploadPart", part_numbers={2}, action="expire"))
    target = front_target(front, bucket)
    with pytest.raises(CredentialsExpiredError) as info:
        await upload_file(target, path, config=FAST)
    assert info.value.code == "ExpiredToken" and info.value.refreshes == 0
    assert not info.value.aborted  # with expired credentials the abort cannot succeed

    # With a checkpoint, the same failure leaves a resumable upload.
    front.faults.add(FaultRule(operation="UploadPart", part_numbers={2}, action="expire"))
    checkpoint = tmp_path / "cp.json"
    target = front_target(front, bucket)
    with pytest.raises(CredentialsExpiredError) as info:
        await upload_file(target, path, config=FAST, checkpoint=checkpoint)
    assert info.value.resumable and checkpoint.exists()


async def test_refresh_limit_and_failing_refresh(
    front: S3Front, bucket: str, image: tuple[Path, bytes]
) -> None:
    path, _ = image
    target = front_target(front, bucket)
    front.revoke(target.access_key)

    async def useless() -> UploadTarget:  # hands out credentials S3 does not know
        return UploadTarget(
            access_key="AKIAUNKNOWN", secret_key="x", bucket=bucket, file=target.file,
            domain=front.url,
        )  # fmt: skip

    config = TransferConfig(part_size=5 * MiB, max_refreshes=2, backoff_base=0.01)
    with pytest.raises(CredentialsExpiredError) as info:
        await upload_file(target, path, config=config, refresh=useless)
    assert info.value.refreshes == 2 and info.value.code == "InvalidAccessKeyId"

    async def broken() -> UploadTarget:
        raise RuntimeError("IMS unavailable")

    with pytest.raises(CredentialsExpiredError) as info:
        await upload_file(target, path, config=config, refresh=broken)
    assert isinstance(info.value.__cause__, RuntimeError)

    async def elsewhere() -> UploadTarget:
        return front_target(front, bucket, key="another-key")

    with pytest.raises(CredentialsExpiredError, match="another object"):
        await upload_file(target, path, config=config, refresh=elsewhere)


async def test_refresh_before_expiry(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes]
) -> None:
    path, data = image
    target = front_target(front, bucket)
    # Credentials that live 1 s (windows: advisory 0.5 s, mandatory 0.25 s
    # before expiry).  The first part is held 1.5 s, so whatever the machine's
    # speed, a later request (at the latest CompleteMultipartUpload) finds
    # them in the mandatory window and waits for the one refresh.  (The
    # front's own credentials live longer: S3 never has to say no.)
    front.faults.add(FaultRule(operation="UploadPart", action="delay", delay=1.5, times=1))
    target.expires_at = datetime.now(timezone.utc) + timedelta(seconds=1)
    calls = 0

    async def refresh() -> UploadTarget:
        nonlocal calls
        calls += 1
        return front_target(front, bucket, key=target.file)

    result = await upload_file(
        target, path, config=TransferConfig(part_size=5 * MiB, refresh_margin=60), refresh=refresh
    )
    assert calls == 1 and result.refreshes == 1
    assert not front.stats.rejected  # refreshed before S3 had to say no
    assert stored_md5(boto3_s3, target) == hashlib.md5(data).hexdigest()


async def test_cancel_without_checkpoint_aborts_quickly(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes]
) -> None:
    path, _ = image
    front.faults.add(FaultRule(operation="UploadPart", action="delay", delay=0.5, times=None))
    target = front_target(front, bucket)
    cancelled_at = 0.0
    events: list[TransferEvent] = []
    with anyio.CancelScope() as scope:

        def progress(event: TransferEvent) -> None:
            nonlocal cancelled_at
            events.append(event)
            if isinstance(event, PartDone) and not cancelled_at:
                cancelled_at = time.monotonic()
                scope.cancel()

        await upload_file(target, path, config=FAST, progress=progress)
    assert scope.cancelled_caught
    assert time.monotonic() - cancelled_at < 10
    assert not uploads_left(boto3_s3, bucket)
    # one abort (aiohttp may resend the idempotent DELETE once on a dropped keep-alive)
    assert front.stats.count("AbortMultipartUpload") >= 1
    failed = events[-1]
    assert isinstance(failed, TransferFailed) and failed.cancelled and failed.aborted


async def test_cancel_abort_override(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    """abort_on_cancel=True aborts even with a checkpoint (and removes it)."""
    path, _ = image
    checkpoint = tmp_path / "cp.json"
    target = front_target(front, bucket)
    config = TransferConfig(part_size=5 * MiB, max_concurrency=2, abort_on_cancel=True)
    with anyio.CancelScope() as scope:

        def progress(event: TransferEvent) -> None:
            if isinstance(event, PartDone):
                scope.cancel()

        await upload_file(target, path, config=config, progress=progress, checkpoint=checkpoint)
    assert not uploads_left(boto3_s3, bucket)
    assert not checkpoint.exists()


# -- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    assert shutil.which("openssl"), "the TLS test needs the openssl command"
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=aioims test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return {"ca": d / "ca.pem", "cert": d / "srv.pem", "key": d / "srv.key"}


async def test_tls_private_ca(
    s3_url: str, bucket: str, boto3_s3: Any, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    data = os.urandom(1000)
    (tmp_path / "small.img").write_bytes(data)
    async with S3Front(upstream=s3_url, ssl_context=context) as tls_front:
        assert tls_front.url.startswith("https://")
        target = front_target(tls_front, bucket)
        # Certificate checks are on by default: an unknown CA fails at once, no retries.
        with pytest.raises(S3TransferError) as info:
            await upload_file(target, tmp_path / "small.img")
        assert info.value.code == "SSLError" and info.value.attempts == 1
        result = await upload_file(
            target, tmp_path / "small.img", config=TransferConfig(ca_bundle=str(tls_files["ca"]))
        )
        assert result.md5 == hashlib.md5(data).hexdigest() == stored_md5(boto3_s3, target)
        await upload_file(target, tmp_path / "small.img", config=TransferConfig(verify_ssl=False))
