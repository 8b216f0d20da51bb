"""The admin API (``/_emulator/``): a schema for every body, validation
before any change, 4xx JSON for every bad input (fuzzed), no silent token
rebinding, no tokens in ``/state`` unless asked, an optional admin token, a
warning when bound to a non-loopback address, and ``POST /_emulator/reset``."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from botocore.exceptions import ClientError
from conftest import ThreadedEmulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_support import create_body, error_code, headers, ims, prepared_image, target_client

from aioims.emulator import Emulator
from aioims.emulator import server as emulator_server
from aioims.emulator.identity import DEFAULT_USERS

pytestmark = pytest.mark.timeout(300)


class Admin:
    """Synchronous raw calls to the admin API (one kept-alive connection)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        self.token = token

    def __call__(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.token is not None:
            sent.setdefault("X-Emulator-Admin-Token", self.token)
        try:
            self.conn.request(method, path, body=data, headers=sent)
            answer = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn.request(method, path, body=data, headers=sent)
            answer = self.conn.getresponse()
        text = answer.read()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        return answer.status, payload

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def admin(clean_emulator: ThreadedEmulator) -> Iterator[Admin]:
    client = Admin(clean_emulator.url)
    yield client
    client.close()


def snapshot(admin: Admin) -> Any:
    return (admin("GET", "/_emulator/faults")[1], admin("GET", "/_emulator/s3-faults")[1],
            admin("GET", "/_emulator/users")[1])


def rejected(admin: Admin, method: str, path: str, body: Any = None, *,
             raw: bytes | None = None, status: int = 400) -> str:
    got, payload = admin(method, path, body, raw=raw)
    assert got == status, (path, body, raw, got, payload)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str), payload
    return str(payload["error"])


def deep(depth: int) -> bytes:
    return b'{"rules": ' + b"[" * depth + b"]" * depth + b"}"


# -- the inputs of the issue ---------------------------------------------------------
BAD_FAULTS: list[Any] = [
    [], "x", 5, None,
    {"rules": [{"endpoint": "get_image", "latency": -1}]},
    {"rules": [{"endpoint": "get_image", "latency": 1e999}]},
    {"rules": [{"endpoint": "get_image", "latency": 1e9}]},
    {"rules": [{"endpoint": "get_image", "times": -1}]},
    {"rules": [{"endpoint": "get_image", "times": 1.5}]},
    {"rules": [{"endpoint": "get_image", "times": True}]},
    {"rules": [{"endpoint": "get_image", "rate": 2}]},
    {"rules": [{"endpoint": "get_image", "drop": "yes"}]},
    {"rules": [{"endpoint": "get_image", "error": {"status": 200}}]},
    {"rules": [{"endpoint": "get_image", "error": {"status": "503"}}]},
    {"rules": [{"endpoint": "get_image", "error": {"retry_after": -1}}]},
    {"rules": [{"endpoint": "get_image", "error": []}]},
    {"rules": [{"endpoint": "get_image", "method": "FOO"}]},
    {"rules": [{"endpoint": "no_such_endpoint"}]},
    {"rules": [{"endpoint": 5}]},
    {"rules": [5]},
    {"rules": [{}]},
    {"rules": "bad"},
    {"activate_delay": -1}, {"activate_delay": 1e308}, {"activate_delay": "1"},
    {"kill_next_uploads": -1}, {"kill_next_uploads": 1.5}, {"kill_next_uploads": True},
    {"kill_image_ids": "img-x"}, {"kill_image_ids": [5]},
    {"seed": "x"}, {"seed": 1.5}, {"replace": "yes"}, {"unknown": 1},
    # valid rules with one bad setting: nothing at all may change
    {"rules": [{"endpoint": "get_image", "times": 1}], "activate_delay": -1},
]  # fmt: skip
BAD_FAULT_LITERALS = [
    b'{"activate_delay": NaN}', b'{"activate_delay": Infinity}',
    b'{"rules": [{"endpoint": "get_image", "latency": Infinity}]}',
    b'{"rules": [{"endpoint": "get_image", "latency": -Infinity}]}',
    b"{", b"\xff\xfe", b'{"a": "\\ud800"', deep(5000), deep(40),
]  # fmt: skip
BAD_S3_FAULTS: list[Any] = [
    [], "x",
    {"credential_lifetime": True}, {"credential_lifetime": 0}, {"credential_lifetime": -1},
    {"credential_lifetime": 1e308}, {"credential_lifetime": "5"},
    {"credential_lifetime": None},
    {"credential_lifetime": 7, "rules": "bad"},
    {"credential_lifetime": 7, "rules": [{"action": "explode"}]},
    {"rules": [{"delay": -1}]}, {"rules": [{"delay": 1e999}]}, {"rules": [{"times": -1}]},
    {"rules": [{"times": 1.5}]}, {"rules": [{"part_numbers": [0]}]},
    {"rules": [{"action": "delay", "when": "after"}]}, {"rules": [{"status": 99}]},
    {"rules": [{"probability": 2}]}, {"replace": 1}, {"unknown": True},
]  # fmt: skip
BAD_S3_LITERALS = [b'{"credential_lifetime": NaN}', b'{"credential_lifetime": Infinity}',
                   deep(5000)]
BAD_USERS: list[Any] = [
    [], "x", 5, {},
    {"token": "t", "user_name": "u"},
    {"token": "has space", "user_name": "u", "user_id": "1", "tenant_id": "2",
     "department_id": "3"},
    {"token": "tok-new", "user_name": "u\x00", "user_id": "1", "tenant_id": "2",
     "department_id": "3"},
    {"token": "tok-new", "user_name": "u" * 300, "user_id": "1", "tenant_id": "2",
     "department_id": "3"},
    {"token": "tok-new", "user_name": "u", "user_id": "1", "tenant_id": "2",
     "department_id": "3", "admin": True},
    {"token": ["t"], "user_name": "u", "user_id": "1", "tenant_id": "2", "department_id": "3"},
]  # fmt: skip


def test_every_bad_admin_input_is_a_4xx_that_changes_nothing(admin: Admin) -> None:
    before = snapshot(admin)
    for body in BAD_FAULTS:
        rejected(admin, "POST", "/_emulator/faults", raw=json.dumps(body).encode())
    for raw in BAD_FAULT_LITERALS:
        rejected(admin, "POST", "/_emulator/faults", raw=raw)
    for body in BAD_S3_FAULTS:
        rejected(admin, "POST", "/_emulator/s3-faults", raw=json.dumps(body).encode())
    for raw in BAD_S3_LITERALS:
        rejected(admin, "POST", "/_emulator/s3-faults", raw=raw)
    for body in BAD_USERS:
        rejected(admin, "POST", "/_emulator/users", raw=json.dumps(body).encode())
    rejected(admin, "POST", "/_emulator/users", raw=deep(5000))
    rejected(admin, "POST", "/_emulator/reset", {"everything": True})
    rejected(admin, "GET", "/_emulator/state?tokens=maybe")
    assert snapshot(admin) == before
    # HTTP errors of the admin API are JSON too
    assert "no admin endpoint" in rejected(admin, "GET", "/_emulator/nope", status=404)
    assert "not allowed" in rejected(admin, "PUT", "/_emulator/faults", status=405)


def test_a_nan_lifetime_can_no_longer_break_upload_prepare(
    admin: Admin, clean_emulator: ThreadedEmulator
) -> None:
    rejected(admin, "POST", "/_emulator/s3-faults", raw=b'{"credential_lifetime": NaN}')
    assert admin("POST", "/_emulator/s3-faults", {"credential_lifetime": 7})[0] == 200
    assert admin("GET", "/_emulator/s3-faults")[1]["credential_lifetime"] == 7
    with pytest.raises(ValueError):
        Emulator(Path("unused"), credential_lifetime=float("nan"))


def test_valid_configurations_still_apply(admin: Admin) -> None:
    status, state = admin("POST", "/_emulator/faults", {
        "rules": [{"endpoint": "get_image", "latency": 0.25, "times": 2, "rate": 0.5},
                  {"path": "/api/image/v1/*", "method": "get", "error": {"status": 503,
                                                                         "retry_after": 1}}],
        "activate_delay": 0, "kill_next_uploads": 0, "seed": 3, "kill_image_ids": []})  # fmt: skip
    assert status == 200 and len(state["rules"]) == 2 and state["seed"] == 3
    status, answer = admin("POST", "/_emulator/s3-faults", {
        "rules": [{"operation": "CompleteMultipartUpload", "action": "reset", "when": "after"}],
        "credential_lifetime": 60})  # fmt: skip
    assert status == 200 and answer == {"rules_added": 1, "credential_lifetime": 60}
    assert admin("GET", "/_emulator/s3-faults")[1]["rules"][0]["when"] == "after"


def test_tokens_are_not_rebound(admin: Admin) -> None:
    alice = next(u for u in DEFAULT_USERS if u.user_name == "alice").to_json()
    evil = {**alice, "tenantId": "7000000000000000002", "userId": "7000000000000000999"}
    assert "not rebound" in rejected(admin, "POST", "/_emulator/users", evil, status=409)
    assert admin("POST", "/_emulator/users", alice)[0] == 200  # the same user again: a no-op
    dave = {"token": "token-dave", "userName": "dave", "userId": "7000000000000000404",
            "tenantId": "7000000000000000004", "departmentId": "7000000000000000044"}
    assert admin("POST", "/_emulator/users", dave)[0] == 201
    assert admin("POST", "/_emulator/users", dave)[0] == 200
    clash = {**dave, "token": "token-eve", "userName": "eve"}
    assert "already belongs" in rejected(admin, "POST", "/_emulator/users", clash, status=409)
    users = {u["token"]: u for u in admin("GET", "/_emulator/users")[1]}
    assert users["token-alice"]["tenantId"] == alice["tenantId"]
    assert "token-eve" not in users


def test_state_lists_tokens_only_when_asked(admin: Admin) -> None:
    status, state = admin("GET", "/_emulator/state")
    assert status == 200 and state["users"]
    assert all("token" not in user for user in state["users"])
    assert "token-alice" not in json.dumps(state)
    shown = admin("GET", "/_emulator/state?tokens=true")[1]
    assert {u["token"] for u in shown["users"]} >= {"token-alice", "token-bob"}


# -- fuzzing -------------------------------------------------------------------------
KEYS = ["rules", "seed", "activate_delay", "kill_image_ids", "kill_next_uploads", "replace",
        "credential_lifetime", "endpoint", "path", "method", "latency", "error", "drop", "when",
        "times", "rate", "status", "code", "retry_after", "operation", "part_numbers", "action",
        "delay", "probability", "message", "token", "user_name", "userId", "user_id",
        "tenant_id", "tenantId", "department_id", "departmentId"]  # fmt: skip
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False) | st.text(max_size=12)
           | st.sampled_from(["get_image", "*", "reset", "after", "UploadPart", "GET", "img-x"]))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)
BODIES = (st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=6).map(
    lambda d: json.dumps(d).encode())
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
    | st.sampled_from([b"NaN", b'{"activate_delay": Infinity}', deep(3000), b"[" * 100]))
TARGETS = st.sampled_from([
    ("POST", "/_emulator/faults"), ("POST", "/_emulator/s3-faults"), ("POST", "/_emulator/users"),
    ("POST", "/_emulator/reset"), ("GET", "/_emulator/state"), ("DELETE", "/_emulator/faults"),
    ("PATCH", "/_emulator/users"), ("GET", "/_emulator/s3-faults"), ("POST", "/_emulator/x"),
])  # fmt: skip


def test_fuzz_admin_endpoints(threaded_emulator: ThreadedEmulator) -> None:
    admin = Admin(threaded_emulator.url)

    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(target=TARGETS, body=BODIES)
    def check(target: tuple[str, str], body: bytes) -> None:
        method, path = target
        status, payload = admin(method, path, raw=body)
        assert status < 500, (method, path, body, status, payload)
        if status >= 400:
            assert isinstance(payload, dict) and "error" in payload, payload

    try:
        check()
    finally:
        admin.close()
        threaded_emulator.call(threaded_emulator.emu.reset())


# -- admin token and exposure ----------------------------------------------------------
@pytest.fixture
async def guarded(tmp_path: Path, s3_url: str) -> AsyncIterator[Emulator]:
    async with Emulator(tmp_path, s3_endpoint=s3_url, s3_front=False,
                        admin_token="s3cret-admin") as emu:  # fmt: skip
        yield emu


async def test_admin_token(guarded: Emulator) -> None:
    async with aiohttp.ClientSession() as http:
        for sent in ({}, {"X-Emulator-Admin-Token": "wrong"},
                     {"Authorization": "Bearer s3cret-admin"}):
            async with http.get(guarded.url + "/_emulator/state", headers=sent) as answer:
                assert answer.status == 401
                assert "X-Emulator-Admin-Token" in (await answer.json())["error"]
        good = {"X-Emulator-Admin-Token": "s3cret-admin"}
        async with http.get(guarded.url + "/_emulator/state", headers=good) as answer:
            assert answer.status == 200
        async with http.post(guarded.url + "/_emulator/reset", headers=good) as answer:
            assert answer.status == 200
        # the IMS API and the OpenAPI document are not behind the admin token
        async with http.get(guarded.url + "/openapi.json") as answer:
            assert answer.status == 200
        data = await ims(http, guarded.url, "GET", "/private-images?current=1&size=1",
                         "token-alice")
        assert data["total"] == 0


def test_loopback_detection() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert emulator_server.is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.0.0.5", "example.org"):
        assert not emulator_server.is_loopback(host), host


async def test_loud_warning_when_not_on_loopback(
    tmp_path: Path, s3_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(emulator_server, "is_loopback", lambda host: False)
    caplog.set_level(logging.WARNING, logger="aioims.emulator")
    async with Emulator(tmp_path, s3_endpoint=s3_url, s3_front=False):
        pass
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not on a loopback address" in r.getMessage() for r in warnings)


# -- reset -----------------------------------------------------------------------------
async def test_reset_restores_a_clean_account(clean_emulator: ThreadedEmulator) -> None:
    emu = clean_emulator
    alice, bob = emu.emu.users["alice"], emu.emu.users["bob"]
    storage = emu.emu.storage
    assert storage is not None
    async with aiohttp.ClientSession() as http:
        image_id, target = await prepared_image(http, emu.url, alice, 10)
        async with target_client(target) as s3:
            await s3.put_object(Bucket=target["bucket"], Key=target["file"], Body=b"0123456789")
            await s3.create_multipart_upload(Bucket=target["bucket"], Key=target["file"])
        await ims(http, emu.url, "POST", f"/private-images/{image_id}/upload-done", alice.token,
                  {"result": "success"})
        await ims(http, emu.url, "POST", "/private-images", bob.token, create_body(bob))
        admin = Admin(emu.url)
        try:
            admin("POST", "/_emulator/faults", {"rules": [{"endpoint": "*", "latency": 0}],
                                                "activate_delay": 5, "kill_next_uploads": 2})
            admin("POST", "/_emulator/s3-faults", {"rules": [{"action": "error", "times": None}],
                                                   "credential_lifetime": 9})
            admin("POST", "/_emulator/users", {
                "token": "token-dave", "userName": "dave", "userId": "7000000000000000404",
                "tenantId": "7000000000000000004", "departmentId": "7000000000000000044"})
            status, answer = admin("POST", "/_emulator/reset")
            assert status == 200 and answer["reset"] is True and answer["seconds"] >= 0
            state = admin("GET", "/_emulator/state")[1]
            assert state["counts"] == {} and state["images"] == [] and state["shares"] == 0
            assert state["jobs"] == 0 and state["credentialLifetime"] == 3600
            assert state["faults"]["rules"] == [] and state["faults"]["activate_delay"] == 0
            assert state["faults"]["kill_next_uploads"] == 0 and state["s3Faults"] == []
            assert sorted(u["userName"] for u in state["users"]) == ["alice", "bob", "carol"]
        finally:
            admin.close()
        # the files and uploads are gone, and the old credentials with them
        assert await emu.acall(storage.head(target["bucket"], target["file"])) is None
        async with target_client(target) as s3:
            with pytest.raises(ClientError) as caught:
                await s3.put_object(Bucket=target["bucket"], Key=target["file"], Body=b"x")
            assert error_code(caught.value) == "InvalidAccessKeyId"
        # and the account works again from scratch (buckets are created on demand)
        image = await ims(http, emu.url, "POST", "/private-images", alice.token,
                          create_body(alice))
        assert image["id"] == 1
        _, fresh = await prepared_image(http, emu.url, alice, 3)
        async with target_client(fresh) as s3:
            listed = await s3.list_multipart_uploads(Bucket=fresh["bucket"], Prefix=fresh["file"])
            assert listed.get("Uploads", []) == []
            await s3.put_object(Bucket=fresh["bucket"], Key=fresh["file"], Body=b"abc")
        async with http.get(f"{emu.url}/api/image/v1/images/{image_id}",
                            headers=headers(alice.token)) as answer:
            assert (await answer.json())["code"] == "IMG.DBGet.NoData"


async def test_reset_with_an_external_s3_empties_only_the_emulators_buckets(
    tmp_path: Path, s3_url: str, boto3_s3: Any, bucket: str
) -> None:
    boto3_s3.put_object(Bucket=bucket, Key="not-ours", Body=b"keep me")
    async with Emulator(tmp_path, s3_endpoint=s3_url) as emu, aiohttp.ClientSession() as http:
        alice = emu.users["alice"]
        _, target = await prepared_image(http, emu.url, alice, 3)
        async with target_client(target) as s3:
            await s3.put_object(Bucket=target["bucket"], Key=target["file"], Body=b"abc")
            await s3.create_multipart_upload(Bucket=target["bucket"], Key=target["file"])
        took = await emu.reset()
        assert took >= 0
        assert emu.storage is not None
        assert await emu.storage.head(target["bucket"], target["file"]) is None
        uploads = boto3_s3.list_multipart_uploads(Bucket=target["bucket"])
        assert uploads.get("Uploads", []) == []
        # the bucket itself stays (known to the emulator), and works on
        _, again = await prepared_image(http, emu.url, alice, 3)
        async with target_client(again) as s3:
            await s3.put_object(Bucket=again["bucket"], Key=again["file"], Body=b"xyz")
    assert boto3_s3.get_object(Bucket=bucket, Key="not-ours")["Body"].read() == b"keep me"
