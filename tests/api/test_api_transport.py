"""Retries, timeouts, errors, auth hooks and options against a local server."""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import ims_vendor_examples as ex
import pytest
from aiohttp import web
from fakes.clock import FakeClock
from ims_fake import FAST_RETRY, REGION, TOKEN, FakeIMS, Reply

from aioims import (
    ApiError,
    CallableAuth,
    ConnectionFailedError,
    DecodeError,
    HeaderAuth,
    IMSSession,
    InvalidParameterError,
    NotFoundError,
    PreparedRequest,
    RequestTimeoutError,
    RetryPolicy,
    ServerHTTPError,
    ServiceError,
)

pytestmark = pytest.mark.timeout(60)

# No assertion here reads the wall clock: waits go through a FakeClock
# (RetryPolicy(clock=...)), and timeouts are checked by what they report
# (the per-attempt limit in the error) against servers that would otherwise
# hang for far longer than the test's own timeout.
HANG = 120.0  # a "hanging" server answer (cut short at teardown)

GET_PATH = "/images/img-kvvfk28fcjc0mt"
CREATE_KW: dict[str, Any] = dict(
    name="centos8.2", disk_format="qcow2", min_disk=10, min_ram=512, image_type="os_image",
    instruction="64-bits", cpu_arch="x86", os_type="linux", platform="CentOS",
    visibility="private", usage="ecs", department_id="7074631167051202560",
    tenant_id="7074631167042813952",
)  # fmt: skip


def err(code: str, status: int = 400, **kw: Any) -> Reply:
    return Reply(ex.error_envelope(code), status=status, **kw)


# --- retries ------------------------------------------------------------------


@pytest.mark.parametrize("code", ["IMG.DBGet.Fail", "IMG.DBUpdate.Fail", "IMG.Internal.Error"])
async def test_transient_code_then_success(fake: FakeIMS, ims: IMSSession, code: str) -> None:
    fake.on("GET", GET_PATH, err(code), ex.load(ex.GET_IMAGE))
    image = await ims.get_image("img-kvvfk28fcjc0mt")
    assert image.image_id == "img-kvvfk28fcjc0mt"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_http_5xx_and_429_are_retried(fake: FakeIMS, ims: IMSSession, status: int) -> None:
    fake.on(
        "GET", GET_PATH, Reply(body=b"<html>busy</html>", status=status, content_type="text/html"),
        ex.load(ex.GET_IMAGE),
    )  # fmt: skip
    await ims.get_image("img-kvvfk28fcjc0mt")
    assert len(fake.requests) == 2


async def test_503_retry_after_seconds_is_honoured(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "GET", GET_PATH,
        Reply(body=b"", status=503, content_type="text/plain", headers={"Retry-After": "0.4"}),
        ex.load(ex.GET_IMAGE),
    )  # fmt: skip
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.005, clock=clock)
    await ims.get_image("img-kvvfk28fcjc0mt", retry=policy)
    assert clock.sleeps == [0.4]  # not the <= 5 ms backoff
    assert len(fake.requests) == 2


async def test_429_retry_after_http_date_is_honoured(fake: FakeIMS, ims: IMSSession) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)
    fake.on(
        "GET", GET_PATH,
        Reply(body=b"slow down", status=429, content_type="text/plain",
              headers={"Retry-After": when}),
        ex.load(ex.GET_IMAGE),
    )  # fmt: skip
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.005, clock=clock)
    await ims.get_image("img-kvvfk28fcjc0mt", retry=policy)
    # HTTP dates have 1 s resolution: the wait is the date minus "now" (at
    # most 2 s; less the longer the machine took between writing and reading it).
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 2
    assert len(fake.requests) == 2


async def test_attempts_are_counted(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, err("IMG.DBGet.Fail"))
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.001)
    with pytest.raises(ServiceError) as info:
        await ims.get_image("img-kvvfk28fcjc0mt", retry=policy)
    assert info.value.code == "IMG.DBGet.Fail"
    assert len(fake.requests) == 4


async def test_non_transient_error_is_not_retried(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, err("IMG.DBGet.NoData"))
    with pytest.raises(NotFoundError):
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(ex.error_envelope("IMG.Internal.Error"), status=400),
        Reply(body=b"down", status=503, content_type="text/plain"),
    ],
)
async def test_create_is_never_retried(fake: FakeIMS, ims: IMSSession, reply: Reply) -> None:
    fake.on("POST", "/private-images", reply, ex.load(ex.CREATE_RESPONSE))
    with pytest.raises((ServiceError, ServerHTTPError)):
        await ims.create_private_image(**CREATE_KW)
    assert len(fake.requests) == 1


async def test_import_and_copy_are_never_retried(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/private-images/import", err("IMG.DBUpdate.Fail"))
    fake.on("POST", "/shared-images/img-share-x/copy", err("IMG.DBUpdate.Fail"))
    with pytest.raises(ServiceError):
        await ims.import_image(
            name="n1", min_disk=1, min_ram=1, cpu_arch="x86", disk_format="raw",
            os_type="linux", os_version="v", platform="other", usage="ecs",
            instruction="64-bits", department_id="d", tenant_id="t", image_url="https://h/x",
        )  # fmt: skip
    with pytest.raises(ServiceError):
        await ims.copy_shared_image(
            "img-share-x", tenant_id="t", department_id="d", resource_group_id="", name="n1"
        )
    assert len(fake.requests) == 2


async def test_share_is_not_retried_on_ambiguous_failures(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("POST", "/private-images/img-x/share", err("IMG.Internal.Error"))
    fake.on("POST", "/private-images/img-x/unshare", Reply(body=b"", status=503))
    with pytest.raises(ServiceError):
        await ims.share_image("img-x", user_ids=["1"])
    with pytest.raises(ServerHTTPError):
        await ims.unshare_image("img-x", user_ids=["1"])
    assert len(fake.requests) == 2


async def test_share_is_retried_on_429(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "POST", "/private-images/img-x/share",
        Reply(body=b"", status=429, headers={"Retry-After": "0"}), ex.load(ex.SHARE_RESPONSE),
    )  # fmt: skip
    await ims.share_image("img-x", user_ids=["1"])
    assert len(fake.requests) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _attempt_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if " attempt=" in r.getMessage()]


async def test_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens: refused before anything is sent.  Idempotent calls and
    share/unshare retry; creating calls never do."""
    caplog.set_level(logging.DEBUG, logger="aioims")
    url = f"http://127.0.0.1:{_closed_port()}"
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001)
    async with IMSSession(url, REGION, retry=policy, timeout=2) as ims:
        with pytest.raises(ConnectionFailedError):
            await ims.get_image("img-x")
        assert len(_attempt_lines(caplog)) == 3
        caplog.clear()
        with pytest.raises(ConnectionFailedError):
            await ims.share_image("img-x", user_ids=["1"])
        assert len(_attempt_lines(caplog)) == 3
        caplog.clear()
        with pytest.raises(ConnectionFailedError):
            await ims.create_private_image(**CREATE_KW)
        assert len(_attempt_lines(caplog)) == 1


async def test_retry_deadline_is_respected(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, Reply(body=b"", status=503))
    clock = FakeClock()
    # (binary fractions: the fake clock's sums are exact)
    policy = RetryPolicy(
        max_attempts=1000, initial_backoff=1 / 16, max_backoff=1 / 16, jitter=False,
        deadline=0.5, clock=clock,
    )  # fmt: skip
    started = clock.monotonic()
    with pytest.raises(ServerHTTPError):
        await ims.get_image("img-kvvfk28fcjc0mt", retry=policy)
    # Attempts at t = 0, 1/16, ..., 7/16: an 8th wait would end at the deadline.
    assert clock.sleeps == [1 / 16] * 7
    assert len(fake.requests) == 8
    assert clock.monotonic() - started < 0.5


async def test_retry_deadline_counts_the_attempts_too(fake: FakeIMS, ims: IMSSession) -> None:
    """Each attempt "takes" 1/8 s of the fake clock: after the third, a wait
    would end past the deadline."""
    clock = FakeClock()

    async def slow_503(request: web.Request) -> web.Response:
        clock.advance(1 / 8)
        return web.Response(status=503, body=b"")

    fake.on("GET", GET_PATH, slow_503)
    policy = RetryPolicy(
        max_attempts=10, initial_backoff=1 / 16, max_backoff=1 / 16, jitter=False,
        deadline=0.5, clock=clock,
    )  # fmt: skip
    with pytest.raises(ServerHTTPError):
        await ims.get_image("img-kvvfk28fcjc0mt", retry=policy)
    # attempts over [0, 1/8], [3/16, 5/16], [3/8, 1/2]: then no time is left
    assert len(fake.requests) == 3
    assert clock.sleeps == [1 / 16, 1 / 16]


async def test_retry_deadline_clips_a_hanging_attempt(fake: FakeIMS, ims: IMSSession) -> None:
    """The attempt's timeout is what is left of the deadline (0.3 s), not the
    session's 5 s; once it is used up, no retry."""
    clock = FakeClock()

    async def hang(request: web.Request) -> web.Response:
        clock.advance(0.3)  # the attempt uses up the deadline on the fake clock
        await fake.sleep(HANG)
        return web.Response(status=503)

    fake.on("GET", GET_PATH, hang)
    policy = RetryPolicy(max_attempts=5, deadline=0.3, clock=clock)
    with pytest.raises(RequestTimeoutError, match=r"within 0\.3s"):
        await ims.get_image("img-kvvfk28fcjc0mt", retry=policy)  # session timeout is 5 s
    assert len(fake.requests) == 1 and clock.sleeps == []


async def test_retry_after_beyond_deadline_gives_up_at_once(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, Reply(body=b"", status=503, headers={"Retry-After": "30"}))
    clock = FakeClock()
    with pytest.raises(ServerHTTPError) as info:
        await ims.get_image("img-kvvfk28fcjc0mt", retry=RetryPolicy(deadline=2, clock=clock))
    assert clock.sleeps == []
    assert info.value.retry_after == 30
    assert len(fake.requests) == 1


def test_retry_policy_clock_is_validated_and_not_compared() -> None:
    clock = FakeClock()
    assert RetryPolicy(clock=clock) == RetryPolicy()
    assert "clock" not in repr(RetryPolicy(clock=clock))
    with pytest.raises(ValueError):
        RetryPolicy(clock=object())  # type: ignore[arg-type]


async def test_per_call_retry_overrides_the_session(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, err("IMG.DBGet.Fail"))
    with pytest.raises(ServiceError):
        await ims.get_image("img-kvvfk28fcjc0mt", retry=RetryPolicy.disabled())
    assert len(fake.requests) == 1


async def test_auth_hook_runs_before_every_attempt(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, err("IMG.DBGet.Fail"), ex.load(ex.GET_IMAGE))
    seen: list[PreparedRequest] = []

    async def sign(request: PreparedRequest) -> None:
        seen.append(request)
        request.headers["X-Signature"] = f"sig-{len(seen)}"
        request.params["ts"] = str(len(seen))

    async with IMSSession(fake.url, REGION, auth=CallableAuth(sign), retry=FAST_RETRY) as ims:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert [r.headers["X-Signature"] for r in fake.requests] == ["sig-1", "sig-2"]
    assert [r.query["ts"] for r in fake.requests] == ["1", "2"]
    assert seen[0].method == "GET"
    assert seen[0].url.endswith("/api/image/v1/images/img-kvvfk28fcjc0mt")
    assert seen[0].headers["x-regionid"] == REGION
    assert seen[0].body == b""


async def test_sync_auth_hook_sees_the_body(fake: FakeIMS) -> None:
    fake.on("POST", "/private-images/img-x/share", ex.load(ex.SHARE_RESPONSE))
    bodies: list[bytes] = []

    def sign(request: PreparedRequest) -> None:
        bodies.append(request.body)
        request.headers["X-Body-Length"] = str(len(request.body))

    async with IMSSession(fake.url, REGION, auth=CallableAuth(sign)) as ims:
        await ims.share_image("img-x", user_ids=["7"])
    assert bodies == [b'{"shares":{"user_ids":["7"]}}']
    assert fake.requests[0].headers["X-Body-Length"] == str(len(bodies[0]))


# --- errors -----------------------------------------------------------------


async def test_error_carries_code_message_request_id_status(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, err("IMG.InvalidParameter"))
    with pytest.raises(InvalidParameterError) as info:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert info.value.code == "IMG.InvalidParameter"
    assert info.value.message == "参数错误"
    assert info.value.request_id == "req-err-1"
    assert info.value.http_status == 400


async def test_non_success_code_in_a_200_is_an_error(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, Reply(ex.error_envelope("IMG.OperationDenied.Identity"), status=200))
    with pytest.raises(ApiError) as info:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert info.value.http_status == 200
    assert info.value.code == "IMG.OperationDenied.Identity"


async def test_request_id_from_header_when_envelope_lacks_it(
    fake: FakeIMS, ims: IMSSession
) -> None:
    fake.on(
        "GET", GET_PATH,
        Reply({"code": "IMG.DBGet.NoData", "message": "no"}, status=400,
              headers={"x-request-id": "hdr-123"}),
    )  # fmt: skip
    with pytest.raises(NotFoundError) as info:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert info.value.request_id == "hdr-123"


async def test_5xx_error_has_status_and_header_request_id(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "GET", GET_PATH,
        Reply(body=b"upstream", status=502, content_type="text/plain",
              headers={"x-request-id": "gw-9"}),
    )  # fmt: skip
    with pytest.raises(ServerHTTPError) as info:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert info.value.http_status == 502 and info.value.request_id == "gw-9"
    assert len(fake.requests) == FAST_RETRY.max_attempts


async def test_non_json_200_is_a_decode_error(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, Reply(body=b"<html>login</html>", content_type="text/html"))
    with pytest.raises(DecodeError):
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert len(fake.requests) == 1


async def test_malformed_data_is_a_decode_error(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, {"requestId": "r-1", "code": "Success", "message": "", "data": None})
    with pytest.raises(DecodeError) as info:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert info.value.request_id == "r-1"


# --- timeouts ----------------------------------------------------------------


async def test_slow_server_times_out(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, Reply(ex.load(ex.GET_IMAGE), delay=HANG))
    async with IMSSession(fake.url, REGION, timeout=0.2, retry=RetryPolicy.disabled()) as ims:
        with pytest.raises(RequestTimeoutError, match=r"within 0\.2s") as info:
            await ims.get_image("img-kvvfk28fcjc0mt")  # long before HANG (and the test timeout)
    assert isinstance(info.value, TimeoutError)


async def test_timeout_is_retried_for_idempotent_calls(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, Reply(ex.load(ex.GET_IMAGE), delay=HANG), ex.load(ex.GET_IMAGE))
    async with IMSSession(fake.url, REGION, timeout=0.2, retry=FAST_RETRY) as ims:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert len(fake.requests) == 2


async def test_per_call_timeout_beats_the_session_default(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, Reply(ex.load(ex.GET_IMAGE), delay=HANG))
    async with IMSSession(fake.url, REGION, timeout=HANG, retry=RetryPolicy.disabled()) as ims:
        with pytest.raises(RequestTimeoutError, match=r"within 0\.1s"):
            await ims.get_image("img-kvvfk28fcjc0mt", timeout=0.1)
        with pytest.raises(RequestTimeoutError, match=r"within 0\.1s"):
            await ims.with_options(timeout=0.1).get_image("img-kvvfk28fcjc0mt")
    fake.on("GET", GET_PATH, Reply(ex.load(ex.GET_IMAGE), delay=0.5))
    async with IMSSession(fake.url, REGION, timeout=0.1, retry=RetryPolicy.disabled()) as ims:
        image = await ims.get_image("img-kvvfk28fcjc0mt", timeout=30)
        assert image.image_id == "img-kvvfk28fcjc0mt"
        image = await ims.with_options(timeout=30).get_image("img-kvvfk28fcjc0mt")
        assert image.image_id == "img-kvvfk28fcjc0mt"


async def test_with_options_retry(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", GET_PATH, err("IMG.DBGet.Fail"))
    view = ims.with_options(retry=RetryPolicy.disabled())
    assert view.retry.max_attempts == 1 and ims.retry is FAST_RETRY
    assert view.timeout == ims.timeout
    with pytest.raises(ServiceError):
        await view.get_image("img-kvvfk28fcjc0mt")
    assert len(fake.requests) == 1


# --- logging ------------------------------------------------------------------


async def test_attempts_logged_without_secrets(
    fake: FakeIMS, caplog: pytest.LogCaptureFixture
) -> None:
    fake.on("GET", GET_PATH, err("IMG.DBGet.Fail"), ex.load(ex.GET_IMAGE))
    caplog.set_level(logging.DEBUG, logger="aioims")
    auth = HeaderAuth({"Authorization": f"Bearer {TOKEN}", "X-Api-Key": "k-SECRET-1"})
    async with IMSSession(fake.url, REGION, auth=auth, retry=FAST_RETRY) as ims:
        await ims.get_image("img-kvvfk28fcjc0mt")
    lines = _attempt_lines(caplog)
    assert len(lines) == 2
    assert "GET /images/img-kvvfk28fcjc0mt -> 400 ServiceError IMG.DBGet.Fail" in lines[0]
    assert "attempt=1/3 requestId=req-err-1" in lines[0]
    assert "-> 200" in lines[1] and "attempt=2/3" in lines[1]
    assert "requestId=1f8a8f8a-a6e2-415e-adfa-917c92cb41d1" in lines[1]
    assert all(r.name == "aioims" and r.levelno == logging.DEBUG for r in caplog.records)
    assert TOKEN not in caplog.text and "k-SECRET-1" not in caplog.text
