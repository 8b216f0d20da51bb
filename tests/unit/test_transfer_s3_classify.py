"""Server-variant classification of S3 answers and credential refresh
(aioims.transfer.s3 / aioims.transfer.credentials), with an in-test fake
S3 client plugged in through ``TransferConfig(s3_client_factory=...)`` and
a hand-driven clock: no network, no waiting."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from aioims import UploadTarget
from aioims.transfer import (
    CredentialsExpiredError,
    S3TransferError,
    TransferConfig,
    upload_file,
)
from aioims.transfer.credentials import Window, refresh_windows
from aioims.transfer.s3 import FailureKind, S3Clients, classify, is_upload_gone

pytestmark = pytest.mark.timeout(60)


def client_error(code: str | None, status: int, message: str = "", **extra: str) -> ClientError:
    error: dict[str, Any] = {"Message": message, **extra}
    if code is not None:
        error["Code"] = code
    return ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "r1"}},
        "PutObject",
    )


# -- pure classification ---------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "maybe"),
    [
        (client_error("AccessDenied", 403), FailureKind.PERMANENT, True),  # radosgw: expired
        (client_error("403", 403, "Forbidden"), FailureKind.PERMANENT, True),  # bodiless HEAD
        (client_error("400", 400, "Bad Request"), FailureKind.PERMANENT, True),
        (client_error("InvalidArgument", 400), FailureKind.PERMANENT, True),  # radosgw: bad token
        (
            client_error("InvalidArgument", 400, "bad", ArgumentName="x-amz-security-token"),
            FailureKind.PERMANENT,
            True,
        ),
        (
            client_error("InvalidArgument", 400, "Part number must be an integer"),
            FailureKind.PERMANENT,
            False,
        ),
        (
            client_error("InvalidArgument", 400, "x", ArgumentName="partNumber"),
            FailureKind.PERMANENT,
            False,
        ),
        (client_error("ExpiredToken", 400), FailureKind.CREDENTIALS, False),
        (client_error("InvalidAccessKeyId", 403), FailureKind.CREDENTIALS, False),
        (client_error("NoSuchBucket", 404), FailureKind.PERMANENT, False),
        (client_error("SignatureDoesNotMatch", 403), FailureKind.PERMANENT, False),
        (client_error("InternalError", 500), FailureKind.TRANSIENT, False),
        (client_error(None, 503), FailureKind.TRANSIENT, False),
    ],
)
def test_classify_marks_ambiguous_refusals(
    exc: BaseException, kind: FailureKind, maybe: bool
) -> None:
    failure = classify(exc)
    assert failure is not None
    assert (failure.kind, failure.maybe_credentials) == (kind, maybe)


@pytest.mark.parametrize(
    ("code", "operation", "after_abort", "gone"),
    [
        ("NoSuchUpload", "UploadPart", False, True),
        ("NoSuchUpload", "CompleteMultipartUpload", False, True),
        ("NoSuchUpload", "AbortMultipartUpload", False, True),
        ("NoSuchKey", "ListParts", False, True),  # radosgw
        ("NoSuchKey", "UploadPart", False, True),
        ("NoSuchKey", "CompleteMultipartUpload", False, True),
        ("NoSuchKey", "AbortMultipartUpload", False, True),
        ("NoSuchKey", "HeadObject", False, False),  # the object, not the upload
        ("NoSuchKey", "PutObject", False, False),
        ("InternalError", "CompleteMultipartUpload", False, False),  # transient by default
        ("InternalError", "CompleteMultipartUpload", True, True),  # radosgw, after an abort
        ("InternalError", "UploadPart", True, False),
        ("AccessDenied", "ListParts", False, False),
        (None, "ListParts", False, False),
    ],
)
def test_is_upload_gone(code: str | None, operation: str, after_abort: bool, gone: bool) -> None:
    assert is_upload_gone(code, operation, after_abort=after_abort) is gone


def test_refresh_windows_shrink_for_short_lived_credentials() -> None:
    assert refresh_windows(3600, 60) == refresh_windows(3600, 60)
    w = refresh_windows(3600, 60)
    assert (w.advisory, w.mandatory) == (60, 30)
    w = refresh_windows(8, 60)  # an 8 s STS session is not "expiring" from the start
    assert (w.advisory, w.mandatory) == (4, 2)
    w = refresh_windows(None, 60)
    assert (w.advisory, w.mandatory) == (60, 30)


# -- a fake S3 client and a hand-driven clock ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeS3:
    """Just enough S3 for a single PutObject and a HEAD; requests signed with a
    token in ``refused`` get ``refusal``."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.refusal = client_error("AccessDenied", 403)
        self.calls: list[tuple[str, str]] = []
        self.opened: list[str] = []
        self.objects: dict[str, bytes] = {}
        self.gate: anyio.Event | None = None

    def factory(self, kwargs: dict[str, Any]) -> Any:
        @contextlib.asynccontextmanager
        async def open_client() -> AsyncIterator[FakeClient]:
            token = kwargs["aws_session_token"] or ""
            self.opened.append(token)
            yield FakeClient(self, token)

        return open_client()


class FakeClient:
    def __init__(self, server: FakeS3, token: str) -> None:
        self.server = server
        self.token = token

    def _check(self, operation: str) -> None:
        self.server.calls.append((operation, self.token))
        if self.token in self.server.refused:
            raise self.server.refusal

    async def put_object(self, **kw: Any) -> dict[str, Any]:
        self._check("PutObject")
        self.server.objects[kw["Key"]] = kw["Body"].read()
        return {"ETag": '"etag"'}

    async def head_object(self, **kw: Any) -> dict[str, Any]:
        if self.server.gate is not None:
            await self.server.gate.wait()
        self._check("HeadObject")
        return {"ETag": '"etag"'}


def target(token: str, expires_at: datetime | None = None) -> UploadTarget:
    return UploadTarget(
        access_key="AK",
        secret_key="SK",
        token=token,
        bucket="b",
        file="k",
        domain="http://127.0.0.1:9",
        expires_at=expires_at,
    )


class Refresher:
    def __init__(self, clock: Clock | None = None, lifetime: float | None = None) -> None:
        self.count = 0
        self.clock = clock
        self.lifetime = lifetime
        self.fail: BaseException | None = None
        self.gate: anyio.Event | None = None

    async def __call__(self) -> UploadTarget:
        self.count += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        expires = None
        if self.clock is not None and self.lifetime is not None:
            expires = self.clock.now + timedelta(seconds=self.lifetime)
        return target(f"tok{self.count}", expires)


def config(fake: FakeS3, **kw: Any) -> TransferConfig:
    return TransferConfig(s3_client_factory=fake.factory, backoff_base=0.001, **kw)


# -- classification with the credentials' history -------------------------------------------


async def test_access_denied_on_temporary_credentials_is_a_credential_failure() -> None:
    fake = FakeS3()
    refresh = Refresher()
    async with S3Clients(target("tok0"), config(fake), refresh, lambda n: None) as clients:
        denied = client_error("AccessDenied", 403)
        failure = clients.classify(denied, 0)
        assert failure is not None and failure.kind is FailureKind.CREDENTIALS
        await clients.credentials_rejected(0, "AccessDenied")
        assert (clients.generation, refresh.count, fake.opened) == (1, 1, ["tok0", "tok1"])
        # fresh credentials refused the same way: a permission error
        failure = clients.classify(denied, 1)
        assert failure is not None and failure.kind is FailureKind.PERMANENT
        assert "permission" in failure.message
        # ... unless they worked for a request first (then they lapsed later)
        fake.calls.clear()
        await clients.client.head_object(Bucket="b", Key="k")
        failure = clients.classify(denied, 1)
        assert failure is not None and failure.kind is FailureKind.CREDENTIALS
        # unambiguous codes stay credential failures
        failure = clients.classify(client_error("ExpiredToken", 400), 1)
        assert failure is not None and failure.kind is FailureKind.CREDENTIALS


async def test_access_denied_on_static_keys_is_permanent() -> None:
    fake = FakeS3()
    async with S3Clients(target(""), config(fake), Refresher(), lambda n: None) as clients:
        failure = clients.classify(client_error("AccessDenied", 403), 0)
        assert failure is not None and failure.kind is FailureKind.PERMANENT


async def test_fresh_credentials_that_expired_again_are_refreshed_again() -> None:
    fake, clock = FakeS3(), Clock()
    refresh = Refresher(clock, lifetime=10)
    cfg = config(fake, refresh_margin=0.0)
    async with S3Clients(target("tok0"), cfg, refresh, lambda n: None, now=clock) as clients:
        await clients.credentials_rejected(0, "AccessDenied")
        clock.advance(11)  # the reactive generation has expired by now
        failure = clients.classify(client_error("AccessDenied", 403), 1)
        assert failure is not None and failure.kind is FailureKind.CREDENTIALS


# -- proactive refresh: advisory and mandatory windows ------------------------------------


async def test_advisory_window_one_refreshes_others_proceed() -> None:
    fake, clock = FakeS3(), Clock()
    refresh = Refresher(clock, lifetime=100)
    refresh.gate = anyio.Event()
    start = target("tok0", clock.now + timedelta(seconds=100))
    cfg = config(fake, refresh_margin=20)  # advisory at 20 s left, mandatory at 10 s
    async with S3Clients(start, cfg, refresh, lambda n: None, now=clock) as clients:
        await clients.ensure_fresh()
        assert refresh.count == 0 and clients.window() is Window.FRESH
        clock.advance(85)  # 15 s left
        assert clients.window() is Window.ADVISORY
        async with anyio.create_task_group() as tg:
            tg.start_soon(clients.ensure_fresh)  # this one refreshes (blocked on the gate)
            await anyio.wait_all_tasks_blocked()
            for _ in range(5):  # the others proceed at once with the current credentials
                await clients.ensure_fresh()
                assert clients.generation == 0
            refresh.gate.set()
        assert refresh.count == 1 and clients.generation == 1


async def test_mandatory_window_everyone_waits_for_one_refresh() -> None:
    fake, clock = FakeS3(), Clock()
    refresh = Refresher(clock, lifetime=100)
    refresh.gate = anyio.Event()
    start = target("tok0", clock.now + timedelta(seconds=100))
    cfg = config(fake, refresh_margin=20)
    seen: list[int] = []
    async with S3Clients(start, cfg, refresh, lambda n: None, now=clock) as clients:
        clock.advance(95)  # 5 s left
        assert clients.window() is Window.MANDATORY

        async def request() -> None:
            await clients.ensure_fresh()
            seen.append(clients.generation)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(request)
            await anyio.wait_all_tasks_blocked()
            assert seen == []  # nobody sends with the expiring credentials
            refresh.gate.set()
    assert refresh.count == 1 and seen == [1] * 6


async def test_failed_advisory_refresh_is_not_fatal_mandatory_is() -> None:
    fake, clock = FakeS3(), Clock()
    refresh = Refresher(clock, lifetime=100)
    refresh.fail = RuntimeError("IMS is down")
    start = target("tok0", clock.now + timedelta(seconds=100))
    cfg = config(fake, refresh_margin=20)
    async with S3Clients(start, cfg, refresh, lambda n: None, now=clock) as clients:
        clock.advance(85)
        await clients.ensure_fresh()  # advisory: fails, logged
        await clients.ensure_fresh()  # not retried at every request
        assert refresh.count == 1 and clients.generation == 0
        clock.advance(10)  # mandatory
        with pytest.raises(CredentialsExpiredError) as info:
            await clients.ensure_fresh()
        assert info.value.code == "RefreshFailed" and refresh.count == 2
        assert isinstance(info.value.__cause__, RuntimeError)


async def test_expired_at_start_refreshes_before_the_first_request(tmp_path: Path) -> None:
    fake, clock = FakeS3(), Clock()
    fake.refused.add("tok0")
    refresh = Refresher(clock, lifetime=3600)
    start = target("tok0", clock.now - timedelta(seconds=5))
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    cfg = config(fake)
    async with S3Clients(start, cfg, refresh, lambda n: None, now=clock) as clients:
        await clients.ensure_fresh()
        assert clients.generation == 1 and clients.target.token == "tok1"
    # through the public API (real clock): the refused token is never sent
    expired = target("tok0", datetime.now(timezone.utc) - timedelta(seconds=5))
    result = await upload_file(expired, path, config=cfg, refresh=refresh)
    assert result.refreshes == 1
    assert [c for c in fake.calls if c[0] == "PutObject"] == [("PutObject", "tok2")]


async def test_concurrent_rejections_share_one_refresh() -> None:
    fake = FakeS3()
    refresh = Refresher()
    refresh.gate = anyio.Event()
    async with S3Clients(target("tok0"), config(fake), refresh, lambda n: None) as clients:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(clients.credentials_rejected, 0, "AccessDenied")
            await anyio.wait_all_tasks_blocked()
            refresh.gate.set()
        assert refresh.count == 1 and clients.generation == 1


async def test_failed_reactive_refresh_reaches_every_waiter() -> None:
    fake = FakeS3()
    refresh = Refresher()
    refresh.gate = anyio.Event()
    refresh.fail = RuntimeError("IMS is down")
    errors: list[BaseException] = []

    async with S3Clients(target("tok0"), config(fake), refresh, lambda n: None) as clients:

        async def rejected() -> None:
            try:
                await clients.credentials_rejected(0, "AccessDenied")
            except CredentialsExpiredError as err:
                errors.append(err)

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(rejected)
            await anyio.wait_all_tasks_blocked()
            refresh.gate.set()
    assert refresh.count == 1 and len(errors) == 4
    assert len({id(e) for e in errors}) == 4  # each waiter raises its own copy
    assert all(isinstance(e.__cause__, RuntimeError) for e in errors)


async def test_refresh_limit_and_no_refresh_callable() -> None:
    fake = FakeS3()
    async with S3Clients(target("tok0"), config(fake), None, lambda n: None) as clients:
        with pytest.raises(CredentialsExpiredError, match="no refresh callable"):
            await clients.credentials_rejected(0, "AccessDenied")
    refresh = Refresher()
    cfg = config(fake, max_refreshes=1)
    async with S3Clients(target("tok0"), cfg, refresh, lambda n: None) as clients:
        await clients.credentials_rejected(0, "AccessDenied")
        with pytest.raises(CredentialsExpiredError, match="after 1 refreshes"):
            await clients.credentials_rejected(1, "ExpiredToken")


# -- through the public API ---------------------------------------------------------------


async def test_upload_refreshes_once_when_temporary_credentials_are_refused(
    tmp_path: Path,
) -> None:
    """Issue #11 (1): radosgw refuses an expired session token with 403
    AccessDenied; the engine must refresh and retry, not fail."""
    fake = FakeS3()
    fake.refused.add("tok0")
    refresh = Refresher()
    path = tmp_path / "f"
    path.write_bytes(b"y" * 1000)
    result = await upload_file(target("tok0"), path, config=config(fake), refresh=refresh)
    assert result.refreshes == 1 and refresh.count == 1
    assert fake.objects["k"] == b"y" * 1000
    assert [c for c in fake.calls if c[0] == "PutObject"] == [
        ("PutObject", "tok0"),
        ("PutObject", "tok1"),
    ]


async def test_corrupted_token_invalid_argument_is_refreshed(tmp_path: Path) -> None:
    fake = FakeS3()
    fake.refused.add("tok0")
    fake.refusal = client_error("InvalidArgument", 400)  # radosgw: a corrupted token
    path = tmp_path / "f"
    path.write_bytes(b"z" * 10)
    result = await upload_file(target("tok0"), path, config=config(fake), refresh=Refresher())
    assert result.refreshes == 1


async def test_fresh_credentials_refused_again_is_a_permission_error(tmp_path: Path) -> None:
    fake = FakeS3()
    fake.refused.update({"tok0", "tok1", "tok2"})
    refresh = Refresher()
    path = tmp_path / "f"
    path.write_bytes(b"y" * 10)
    with pytest.raises(S3TransferError) as info:
        await upload_file(target("tok0"), path, config=config(fake), refresh=refresh)
    assert not isinstance(info.value, CredentialsExpiredError)
    assert info.value.code == "AccessDenied" and not info.value.transient
    assert refresh.count == 1  # refreshed once, not up to max_refreshes
    assert "permission" in str(info.value)


async def test_a_cancelled_refresh_leaves_the_waiters_to_refresh_themselves() -> None:
    fake = FakeS3()
    refresh = Refresher()
    refresh.gate = anyio.Event()
    async with S3Clients(target("tok0"), config(fake), refresh, lambda n: None) as clients:
        initiator = anyio.CancelScope()

        async def first() -> None:
            with initiator:
                await clients.credentials_rejected(0, "AccessDenied")

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(clients.credentials_rejected, 0, "AccessDenied")
            await anyio.wait_all_tasks_blocked()
            initiator.cancel()  # the refreshing request is cancelled mid-refresh
            await anyio.wait_all_tasks_blocked()
            refresh.gate.set()
        assert refresh.count == 2 and clients.generation == 1


async def test_without_refresh_access_denied_is_a_credentials_error_only_when_expired() -> None:
    fake, clock = FakeS3(), Clock()
    denied = client_error("AccessDenied", 403)
    start = target("tok0", clock.now + timedelta(seconds=100))
    async with S3Clients(start, config(fake), None, lambda n: None, now=clock) as clients:
        failure = clients.classify(denied, 0)
        assert failure is not None and failure.kind is FailureKind.PERMANENT
        assert "may have lapsed" in failure.message
        clock.advance(101)
        failure = clients.classify(denied, 0)
        assert failure is not None and failure.kind is FailureKind.CREDENTIALS
