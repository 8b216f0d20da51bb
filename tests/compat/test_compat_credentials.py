"""Temporary credentials on radosgw, which enforces them (moto does not):
STS session credentials that lapse before or during an upload, corrupted
tokens, real permission errors, and what the errors say (issue #11, 1)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from compat_servers import S3Server, expiration

from aioims.transfer import (
    CredentialsExpiredError,
    MiB,
    PartUploadError,
    S3TransferError,
    SourceChangedError,
    TransferEvent,
    TransferFailed,
    upload_file,
    upload_stream,
)

# a real S3 server, seconds per test: the slow lane
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

SIZE = 16 * MiB + 3  # 4 parts of 5 MiB


def write(path: Path, size: int = SIZE) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


async def until_lapsed(creds: dict[str, Any]) -> None:
    """Wait (without blocking the loop) until ``creds`` have expired on the
    server (its clock is this machine's: same host)."""
    left = (expiration(creds) - datetime.now(timezone.utc)).total_seconds()
    await anyio.sleep(max(0.0, left + 1.0))


async def until_left(creds: dict[str, Any], seconds: float) -> None:
    left = (expiration(creds) - datetime.now(timezone.utc)).total_seconds()
    await anyio.sleep(max(0.0, left - seconds))


class PauseBefore:
    """A ``PartLimiter`` that holds part slot number ``n`` (1-based, in
    acquisition order) until ``wait()`` returns: parts before it are sent
    with the first credentials, parts from it on after they lapsed."""

    def __init__(self, n: int, wait: Callable[[], Any]) -> None:
        self.n = n
        self.wait = wait
        self.acquired = 0

    async def acquire(self, owner: object, nbytes: int) -> None:
        self.acquired += 1
        if self.acquired == self.n:
            await self.wait()

    def release(self, owner: object) -> None:
        pass


# -- lapsed before the upload starts ------------------------------------------------------


async def test_lapsed_at_start_with_known_expiry_refreshes_before_sending(
    rgw_server: S3Server, lapsed_credentials: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    data = write(tmp_path / "disk.img")
    bucket = rgw_server.new_bucket()
    target = rgw_server.target(bucket, creds=lapsed_credentials(), with_expiry=True)
    refresh = rgw_server.refresher(target, with_expiry=True)
    result = await upload_file(
        target,
        tmp_path / "disk.img",
        config=rgw_server.config(),
        refresh=refresh,
        checkpoint=tmp_path / "cp.json",
    )
    assert result.refreshes == 1 and len(refresh.calls) == 1
    assert rgw_server.body(bucket, target.file) == data


async def test_lapsed_at_start_with_unknown_expiry_refreshes_on_access_denied(
    rgw_server: S3Server, lapsed_credentials: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    """Issue #11 (1): radosgw answers a lapsed session token with 403
    AccessDenied (not ExpiredToken); with a refresh callable and a
    checkpoint the upload must refresh and succeed."""
    data = write(tmp_path / "disk.img")
    bucket = rgw_server.new_bucket()
    target = rgw_server.target(bucket, creds=lapsed_credentials())  # expires_at unknown
    refresh = rgw_server.refresher(target)
    result = await upload_file(
        target,
        tmp_path / "disk.img",
        config=rgw_server.config(),
        refresh=refresh,
        checkpoint=tmp_path / "cp.json",
    )
    assert result.refreshes == 1 and len(refresh.calls) == 1
    assert rgw_server.body(bucket, target.file) == data
    assert rgw_server.uploads(bucket) == []


async def test_lapsed_without_refresh(
    rgw_server: S3Server, lapsed_credentials: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    """No refresh callable: with a known, past expiry the refusal is a
    credentials error; without one, AccessDenied as it is (with a hint)."""
    write(tmp_path / "disk.img", 1000)
    bucket = rgw_server.new_bucket()
    target = rgw_server.target(bucket, creds=lapsed_credentials(), with_expiry=True)
    with pytest.raises(CredentialsExpiredError) as info:
        await upload_file(target, tmp_path / "disk.img", config=rgw_server.config())
    assert info.value.code == "AccessDenied" and info.value.refreshes == 0

    target = rgw_server.target(bucket, creds=lapsed_credentials())
    with pytest.raises(S3TransferError) as error:
        await upload_file(target, tmp_path / "disk.img", config=rgw_server.config())
    assert not isinstance(error.value, CredentialsExpiredError)
    assert error.value.code == "AccessDenied" and "may have lapsed" in str(error.value)
    assert rgw_server.head(bucket, target.file) is None


async def test_corrupted_token_is_refreshed(rgw_server: S3Server, tmp_path: Path) -> None:
    """radosgw answers a corrupted session token with 400 InvalidArgument."""
    data = write(tmp_path / "disk.img")
    bucket = rgw_server.new_bucket()
    good = rgw_server.target(bucket)
    from attrs import evolve

    target = evolve(good, token=good.token[:-8] + "AAAAAAAA")
    refresh = rgw_server.refresher(target)
    result = await upload_file(
        target, tmp_path / "disk.img", config=rgw_server.config(), refresh=refresh
    )
    assert result.refreshes == 1
    assert rgw_server.body(bucket, target.file) == data


# -- lapsing during the upload (each waits ~5 s for credentials to lapse: HTTP only;
# HTTPS is covered by the tests above and below) -------------------------------------------


async def test_lapsing_mid_upload_reactive_refresh(rgw_http: S3Server) -> None:
    """Credentials with a 5 s lifetime and no known expiry: the stream stalls
    after two parts until they have lapsed; the next parts are refused
    (AccessDenied), refreshed once, and the upload completes."""
    data = os.urandom(SIZE)
    bucket = rgw_http.new_bucket()
    creds = rgw_http.session_credentials(5)
    target = rgw_http.target(bucket, creds=creds)
    refresh = rgw_http.refresher(target)

    async def chunks() -> AsyncIterator[bytes]:
        yield data[: 10 * MiB]
        await until_lapsed(creds)
        yield data[10 * MiB :]

    config = rgw_http.config(max_concurrency=2)
    result = await upload_stream(target, chunks(), size=SIZE, config=config, refresh=refresh)
    assert result.refreshes == 1 and len(refresh.calls) == 1
    assert rgw_http.body(bucket, target.file) == data
    assert result.etag == rgw_http.admin.head_object(Bucket=bucket, Key=target.file)["ETag"]


async def test_expiring_mid_upload_proactive_refresh(rgw_http: S3Server) -> None:
    """Credentials with an 8 s lifetime and a known expiry: once they are in
    the advisory window (3 s before expiry with refresh_margin=3), the next
    request refreshes them before they lapse."""
    data = os.urandom(SIZE)
    bucket = rgw_http.new_bucket()
    creds = rgw_http.session_credentials(8)
    target = rgw_http.target(bucket, creds=creds, with_expiry=True)
    refresh = rgw_http.refresher(target, with_expiry=True)

    async def chunks() -> AsyncIterator[bytes]:
        yield data[: 10 * MiB]
        await until_left(creds, 2.5)
        yield data[10 * MiB :]

    config = rgw_http.config(max_concurrency=2, refresh_margin=3.0)
    result = await upload_stream(target, chunks(), size=SIZE, config=config, refresh=refresh)
    assert result.refreshes >= 1
    assert refresh.after_expiry[0] is False, "refreshed ahead of the expiry"
    assert rgw_http.body(bucket, target.file) == data


async def test_failed_refresh_mid_upload_is_resumable(rgw_http: S3Server, tmp_path: Path) -> None:
    """The credentials lapse mid-upload and the refresh fails: the error says
    resumable=True (upload and checkpoint kept) and a later run with fresh
    credentials resumes it, sending only the missing parts."""
    data = write(tmp_path / "disk.img")
    checkpoint = tmp_path / "cp.json"
    bucket = rgw_http.new_bucket()
    creds = rgw_http.session_credentials(5)
    target = rgw_http.target(bucket, creds=creds)
    refresh = rgw_http.refresher(target)
    refresh.fail = RuntimeError("IMS unavailable")

    async def lapse() -> None:
        await until_lapsed(creds)

    config = rgw_http.config(max_concurrency=1, part_limiter=PauseBefore(3, lapse))
    with pytest.raises(CredentialsExpiredError) as info:
        await upload_file(
            target, tmp_path / "disk.img", config=config, refresh=refresh, checkpoint=checkpoint
        )
    err = info.value
    assert err.resumable and not err.aborted
    assert isinstance(err.__cause__, RuntimeError)
    assert len(rgw_http.uploads(bucket)) == 1 and checkpoint.exists()

    fresh = rgw_http.target(bucket, target.file)
    result = await upload_file(
        fresh, tmp_path / "disk.img", config=rgw_http.config(), checkpoint=checkpoint
    )
    assert result.resumed_parts == 2
    assert rgw_http.body(bucket, target.file) == data
    assert rgw_http.uploads(bucket) == [] and not checkpoint.exists()


async def test_abort_after_lapse_uses_fresh_credentials(rgw_http: S3Server) -> None:
    """The upload fails for good (the stream ends early) after the credentials
    lapsed: the abort is refused, refreshes, and aborts (no orphan)."""
    data = os.urandom(SIZE)
    bucket = rgw_http.new_bucket()
    creds = rgw_http.session_credentials(5)
    target = rgw_http.target(bucket, creds=creds)
    refresh = rgw_http.refresher(target)

    async def chunks() -> AsyncIterator[bytes]:
        yield data[: 10 * MiB]
        await until_lapsed(creds)
        # ends 1 MiB short

    events: list[TransferEvent] = []
    config = rgw_http.config(max_concurrency=1)
    with pytest.raises(SourceChangedError) as info:
        await upload_stream(
            target, chunks(), size=SIZE + MiB, config=config, refresh=refresh,
            progress=events.append,
        )  # fmt: skip
    assert info.value.aborted
    assert rgw_http.uploads(bucket) == []
    assert len(refresh.calls) == 1
    failed = [e for e in events if isinstance(e, TransferFailed)]
    assert failed and failed[0].aborted


# -- a real permission error ----------------------------------------------------------------


async def test_fresh_credentials_refused_again_is_a_permission_error(
    rgw_server: S3Server, tmp_path: Path
) -> None:
    """A bucket policy denies PutObject: AccessDenied, one refresh, AccessDenied
    again with the fresh credentials -> a permission error (not a credentials
    error), not resumable, nothing left behind."""
    write(tmp_path / "disk.img")
    bucket = rgw_server.new_bucket()
    rgw_server.admin.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": ["s3:PutObject"],
                        "Resource": [f"arn:aws:s3:::{bucket}/*"],
                    }
                ],
            }
        ),
    )
    target = rgw_server.target(bucket)
    refresh = rgw_server.refresher(target)
    started = time.monotonic()
    with pytest.raises(S3TransferError) as info:
        await upload_file(
            target,
            tmp_path / "disk.img",
            config=rgw_server.config(),
            refresh=refresh,
            checkpoint=tmp_path / "cp.json",
        )
    err = info.value
    assert not isinstance(err, CredentialsExpiredError)
    assert err.code == "AccessDenied" and not err.resumable and not err.transient
    assert len(refresh.calls) == 1, "refresh once, then it is a permission error"
    assert "permission" in str(err)
    assert rgw_server.uploads(bucket) == []
    assert time.monotonic() - started < 120
    _ = PartUploadError  # (CreateMultipartUpload is refused: not a part error)
