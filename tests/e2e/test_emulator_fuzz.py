"""Property-based fuzzing of the emulator's API (hypothesis, derandomized).

One in-process emulator for the whole module (run in a background event loop
through an anyio blocking portal, so that the hypothesis tests stay plain
synchronous functions), called as alice with plain aiohttp.  Every endpoint
gets malformed bodies, odd query strings, odd path ids, wrong methods and
odd headers; every answer must be

* below HTTP 500;
* the vendor envelope ``{requestId, code, message, data}`` (the request id
  also in ``x-request-id``), with ``code`` ``Success`` (HTTP 200) or an
  ``IMG.*`` code (HTTP 4xx, ``data`` null) -- never ``IMG.Internal.Error`` nor
  a database error, which would mean an unexpected exception in the emulator;
* valid against the emulator's OpenAPI document (the operation's success
  schema, or ``ErrorEnvelope``);

except the download's success, a byte stream (200/206), allowed only for an
active image, and ``HEAD`` answers, which have no body.

Requests that are not valid HTTP/1.1 (control characters in headers, a
request line over 8190 bytes) are answered by aiohttp's HTTP parser before
the application sees them: they are not fuzzed here.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import attrs
import pytest
import yarl
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from test_emulator_support import REGION, Api, create_body, update_body

from aioims.emulator import Emulator
from aioims.emulator.faults import API_PREFIX
from aioims.emulator.openapi import openapi_document

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: codes that mean an unexpected exception (no fault rules are configured here)
NEVER = {"IMG.Internal.Error", "IMG.DBGet.Fail", "IMG.DBUpdate.Fail"}
NO_SUCH_IMAGE = "img-zzzzzzzzzzzzzz"
NO_SUCH_SHARE = "img-share-zzzzzzzzzzzzzzzzzzzz"
MIB = 1024 * 1024
HUGE = "x" * MIB
DOC = openapi_document()
OPS = {
    op["operationId"]: (method.upper(), path[len(API_PREFIX) :], op)
    for path, item in DOC["paths"].items()
    if path.startswith(API_PREFIX)
    for method, op in item.items()
}
BODY_OPS = sorted(op_id for op_id, (*_, op) in OPS.items() if "requestBody" in op)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({"components": DOC["components"], "allOf": [schema]})


SUCCESS = {
    op_id: _validator(op["responses"]["200"]["content"]["application/json"]["schema"])
    for op_id, (*_, op) in OPS.items()
    if not op_id.startswith("download_private_image")
}
ERROR = _validator({"$ref": "#/components/schemas/ErrorEnvelope"})


@attrs.define
class Reply:
    method: str
    url: str
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Fuzz:
    """The emulator, its world (images in several states) and a sender."""

    def __init__(self, portal: BlockingPortal, emu: Emulator, http: aiohttp.ClientSession):
        self.portal = portal
        self.emu = emu
        self.http = http
        self.users = {name: user.to_json() for name, user in emu.users.items()}
        self.api = Api(http, emu.url, self.users)
        self.base = emu.url + API_PREFIX
        self.images: dict[str, str] = {}
        self.shares: dict[str, str] = {}
        self.active: set[str] = set()
        self.bodies: dict[str, dict[str, Any]] = {}

    def headers(self, **extra: str | None) -> dict[str, str]:
        out = {"Authorization": "Bearer token-alice", "x-regionid": REGION, **extra}
        return {k: v for k, v in out.items() if v is not None}

    def send(
        self, method: str, raw_path: str, *, headers: dict[str, str] | None = None, data: Any = None
    ) -> Reply:
        """``raw_path``: path (and query) under /api/image/v1, already percent-encoded."""
        url = yarl.URL(self.base + raw_path, encoded=True)
        headers = self.headers() if headers is None else headers
        if data is not None and not isinstance(data, bytes):
            data = json.dumps(data).encode()
        if data is not None and headers.get("Content-Encoding") in ("gzip", "deflate"):
            data = (gzip.compress if headers["Content-Encoding"] == "gzip" else zlib.compress)(data)
        if data is not None and len(data) > MIB:
            data = io.BytesIO(data)  # aiohttp warns about large bytes bodies
        return self.portal.call(self._send, method, url, headers, data)

    async def _send(self, method: str, url: yarl.URL, headers: dict[str, str], data: Any) -> Reply:
        async with self.http.request(
            method, url, headers=headers, data=data, allow_redirects=False
        ) as answer:
            body = await answer.read()
            return Reply(method, str(url), answer.status, answer.headers, body)

    async def build_world(self) -> None:
        api, alice, bob = self.api, self.users["alice"], self.users["bob"]
        self.images["queued"] = (await api.create())["imageId"]
        for name, who, extra in (
            ("active", "alice", {}),
            ("public", "alice", {"visibility": "public"}),
            ("shared", "alice", {}),
            ("bob_to_alice", "bob", {}),
        ):
            image_id = (await api.create(user=who, name=name, **extra))["imageId"]
            await api.upload(image_id, name.encode() * 100, user=who)
            self.images[name] = image_id
            if who == "alice":
                self.active.add(image_id)
        self.images["killed"] = (await api.create(name="killed"))["imageId"]
        await api.ok(
            "POST", f"/private-images/{self.images['killed']}/upload-prepare", json={"size": 5}
        )
        await api.ok(
            "POST",
            f"/private-images/{self.images['killed']}/upload-done",
            json={"result": "failed"},
        )
        self.images["bob"] = (await api.create(user="bob", name="bobs"))["imageId"]
        self.images["missing"] = NO_SUCH_IMAGE
        for image, owner, to in (("shared", "alice", bob), ("bob_to_alice", "bob", alice)):
            image_id = self.images[image]
            body = {"shares": {"user_ids": [to["userId"]]}}
            await api.ok("POST", f"/private-images/{image_id}/share", user=owner, json=body)
            page = await api.ok(
                "GET",
                f"/private-images/{image_id}/share",
                user=owner,
                params={"current": 1, "size": 1},
            )
            self.shares[image] = page["list"][0]["shareId"]
        self.shares["missing"] = NO_SUCH_SHARE
        buckets = await api.ok("GET", f"/private-images/{self.images['active']}/oss-bucket-list")
        self.bodies = {
            "create_private_image": create_body(alice, description="fuzzed", osVersion="v1"),
            "import_image": {
                **create_body(alice, osVersion="v1"),
                "imageUrl": "http://127.0.0.1:9/refused.qcow2",  # fails fast, never leaves the host
                "volumeImages": [{"imageUrl": "http://127.0.0.1:9/data.qcow2", "minDisk": 1}],
            },
            "update_private_image": update_body(diskFormat="qcow2"),
            "upload_prepare": {"size": 1024},
            "upload_done": {"result": "success", "uploadId": ""},
            "share_image": {"shares": {"user_ids": [bob["userId"]]}},
            "unshare_image": {"shares": {"user_ids": [bob["userId"]]}},
            "export_image": {"bucket": buckets[0]},
            "copy_shared_image": {
                "tenantId": alice["tenantId"],
                "departmentId": alice["departmentId"],
                "resourceGroupId": "",
                "name": "copied",
                "description": "a fuzzed copy",
            },
        }

    # --- checks -------------------------------------------------------------------------

    def check(self, reply: Reply, op_id: str | None, image_id: str | None = None) -> Any:
        """The invariants of every answer (see the module docstring); returns the JSON."""
        where = f"{reply.method} {reply.url[:300]} -> {reply.status}: {reply.body[:300]!r}"
        assert reply.status < 500, where
        assert reply.headers.get("x-request-id"), where
        if (
            op_id is not None
            and op_id.startswith("download_private_image")
            and reply.status in (200, 206)
        ):
            assert image_id in self.active, where
            assert reply.headers["Content-Type"] == "application/octet-stream", where
            if reply.status == 206:
                assert reply.headers["Content-Range"].startswith("bytes "), where
            if reply.method == "GET":
                assert len(reply.body) == int(reply.headers["Content-Length"]), where
            return None
        if reply.method == "HEAD":
            assert reply.body == b"", where
            assert reply.status >= 400, where  # HEAD is only routed to the download
            return None
        assert reply.headers["Content-Type"].startswith("application/json"), where
        body = reply.json()
        assert isinstance(body, dict) and set(body) == {"requestId", "code", "message", "data"}, (
            where
        )
        assert body["requestId"] == reply.headers["x-request-id"], where
        assert isinstance(body["message"], str), where
        code = body["code"]
        assert code == "Success" or (isinstance(code, str) and code.startswith("IMG.")), where
        assert code not in NEVER, where
        if code == "Success":
            assert reply.status == 200, where
            assert op_id is not None, where
            errors = [e.message for e in SUCCESS[op_id].iter_errors(body)]
            assert not errors, (where, errors)
        else:
            assert 400 <= reply.status < 500 and body["data"] is None, where
            errors = [e.message for e in ERROR.iter_errors(body)]
            assert not errors, (where, errors)
        return body


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    async def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Emulator(tmp_path_factory.mktemp("fuzz"))) as emu,
    ):
        http = portal.call(session)
        try:
            world = Fuzz(portal, emu, http)
            portal.call(world.build_world)
            yield world
            portal.call(emu.wait_idle)
        finally:
            portal.call(http.close)


def path_for(fuzz: Fuzz, op_id: str, image: str = "missing", share: str = "missing") -> str:
    _, template, _ = OPS[op_id]
    return template.replace("{image_id}", fuzz.images[image]).replace(
        "{share_id}", fuzz.shares[share]
    )


def needs_page(op_id: str) -> bool:
    return any(p["$ref"].endswith("/Current") for p in OPS[op_id][2]["parameters"])


# --- strategies -----------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**63, -(2**63), 10**30, 5 * 1024**4 + 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "\udfff x", "img-abc", "null"]),
    st.builds(lambda: HUGE),  # 1 MiB (built lazily: keeps hypothesis' reprs small)
    st.sampled_from(["1", "名字", "😀", "x86", "private", "success", "http://[::1", "http://"]),
    st.text(max_size=30),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([
        b"", b"   ", b"{", b"[", b"null", b"true", b"1", b'"x"', b"[]", b"{}", b"\x00",
        b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b'{"a":1}{"b":2}',
        b'{"a":' * 5000 + b"1" + b"}" * 5000, b'{"size": NaN}', b'{"size": Infinity}',
        b'{"minDisk": 1e400}', b'{"size": 1' + b"0" * 5000 + b"}", b'{"name": "\\ud800"}',
        b'{"name": "\xff"}',
    ]),
    st.builds(lambda: b"[" * 100_000),
    st.builds(lambda: b"x" * (5 * MIB)),  # over the 4 MiB limit
)  # fmt: skip


def key_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, inner in items:
        out.append((*prefix, key))
        out.extend(key_paths(inner, (*prefix, key)))
    return out


SAME_TYPE: dict[type, st.SearchStrategy[Any]] = {
    bool: st.booleans(),
    int: st.one_of(
        st.integers(-5, 5000),
        st.sampled_from([2**31 - 1, 2**31, 5 * 1024**4, 5 * 1024**4 + 1, 2**63, -(2**31)]),
    ),
    str: st.one_of(
        st.text(max_size=40),
        st.sampled_from(["", " ", " x", "x ", "a", "ab", "x" * 128, "x" * 129, "y" * 257]),
        st.sampled_from(["QCOW2", "Raw", "ARM", "centos", "PUBLIC", "shared", "img-abc", "名字"]),
        st.builds(lambda: HUGE),
    ),
    list: st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=60),
}


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any], same_type: bool = False) -> Any:
    """*valid* with a few fields dropped, replaced (by junk, or by another value of
    the same JSON type when *same_type*) or added."""
    body = copy.deepcopy(valid)
    paths = key_paths(body)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent = body
        try:
            for key in path[:-1]:
                parent = parent[key]
            old = parent[path[-1]]
            if same_type and type(old) in SAME_TYPE:
                parent[path[-1]] = draw(SAME_TYPE[type(old)])
            elif draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent
    if not same_type and draw(st.booleans()):
        extra = ["extra", "image", "", "名", "instructions", "volumelImages", "imageSource"]
        body[draw(st.sampled_from(extra))] = draw(JSON)
    return body


def bodies(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    as_json = st.one_of(
        st.just(valid),  # valid, on images in every state: the state machine's errors
        mutated(valid),
        mutated(valid, same_type=True),
        mutated(valid, same_type=True),
        JSON.filter(lambda v: not isinstance(v, dict)),
        st.dictionaries(st.sampled_from(sorted(valid)), JSON, max_size=4),
        st.just({"image": valid}),  # the table's nested form
    ).map(lambda v: json.dumps(v).encode())
    return st.one_of(as_json, as_json, RAW_BODIES)


QUERY_VALUES = st.one_of(
    st.sampled_from([
        "", "0", "-1", "1", "2", "1000", "1001", "2147483647", "2147483648", "9" * 30,
        "9" * 5000, "1.5", "1e3", "0x10", " 1", "+1", "1_0", "١", "１", "abc", "\x00", "名",
        "name:lk:", "name:lk:x|", "name:xx:1", "nope:eq:1", "|||", ":::", "createdAt:desc",
        "createdAt:sideways", "name:asc,,", "size:desc|id", "region0",
    ]),
    st.text(max_size=20),
)  # fmt: skip
QUERY_KEYS = st.sampled_from(["current", "size", "filter", "orderBy", "requestInfo", "x", ""])
RAW_QUERY = st.sampled_from(
    ["", "&%zz=1", "&current=%", "&size=%ED%A0%80", "&&&", "&=", "&current"]
)


def encode(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = [
        ("current", draw(QUERY_VALUES | st.just("1"))),
        ("size", draw(QUERY_VALUES | st.just("10"))),
    ]
    pairs = [p for p in pairs if draw(st.integers(0, 4))]  # sometimes missing
    pairs += draw(st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4))
    encoded = [f"{encode(k)}={encode(v)}" for k, v in pairs]
    while len("&".join(encoded)) > 7000:  # keep the request line under aiohttp's 8190 bytes
        encoded.pop()
    return "&".join(encoded) + draw(RAW_QUERY)


PATH_IDS = st.one_of(
    st.sampled_from([
        "..", ".", "%2F", "%2e%2e", "%2F..%2F..", "img-", "IMG-ABC", "img-ABC", "img-abc%0A",
        "img-abc%00", "%00", "%ED%A0%80", "%FF", "%zz", "img-" + "a" * 65, "a" * 4000,
        "img-" + "a" * 3000, "%E5%90%8D", "img-share-abc", "img-share-", "%20", "img-abc%20",
        ";", "img-abc;x=1", "%3F", "%23", "~", "img-%F0%9F%98%80", NO_SUCH_IMAGE, NO_SUCH_SHARE,
    ]),
    st.text(min_size=1, max_size=30).map(encode),
)  # fmt: skip
AUTH = st.sampled_from([
    None, "", "Bearer", "Bearer ", "Bearer token-alice", "bearer token-alice",
    "BEARER   token-alice  ", "Bearer token-nobody", "Basic dG9rZW4tYWxpY2U=",
    "Bearer token-alice token-bob", "Token token-alice", "Bearer " + "x" * 4000, "Bearer 名",
    "Bearer token-bob", "token-alice",
])  # fmt: skip
REGIONS = st.sampled_from([None, "", " ", "region0", "x" * 4000, "名", "a,b", "region0 "])
EXTRA_HEADERS = st.sampled_from([
    {}, {"Content-Type": "text/plain"}, {"Content-Type": "application/xml; charset=latin-1"},
    {"Content-Encoding": "gzip"}, {"Content-Encoding": "deflate"},
    {"Content-Encoding": "identity"}, {"Content-Encoding": "bogus"}, {"Accept": "text/html"},
    {"Range": "bytes=0-0"},
    {"Expect": "100-continue"}, {"X-Forwarded-For": "1.2.3.4"}, {"Accept-Encoding": "gzip"},
])  # fmt: skip
RANGES = st.one_of(
    st.none(),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(-5, 3000), st.integers(-5, 3000)),
    st.builds(lambda a: f"bytes={a}-", st.integers(-5, 10**20)),
    st.builds(lambda a: f"bytes=-{a}", st.integers(-5, 10**20)),
    st.sampled_from(["bytes=", "bytes=-", "bytes=--1", "bytes=0-1,2-3", "items=0-1", "bytes=a-b",
                     "bytes=0-0", "bytes=1-0", "bytes=١-٢", "", "bytes = 0 - 1"]),
    st.text(max_size=20).filter(lambda t: t.isprintable() and t.isascii()),
)  # fmt: skip
IMAGE_KEYS = ("queued", "active", "public", "shared", "killed", "bob", "bob_to_alice", "missing")
SHARE_KEYS = ("shared", "bob_to_alice", "missing")


def image_for(data: st.DataObject, op_id: str) -> str:
    """A world image; destructive operations only get the missing one."""
    keys = ("missing",) if op_id == "delete_private_image" else IMAGE_KEYS
    return data.draw(st.sampled_from(keys), label="image")


# --- tests ----------------------------------------------------------------------------------


def test_every_operation_succeeds_and_matches_openapi(fuzz: Fuzz) -> None:
    """A valid call of every operation (its body valid against the document)
    answers ``Success`` with the documented data."""
    done: set[str] = set()
    carol = fuzz.users["carol"]["userId"]
    active = fuzz.images["active"]

    def ok(op_id: str, path: str, body: Any = None, **ids: str) -> Any:
        method, _, op = OPS[op_id]
        if body is not None:  # the document describes the request too
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert not [e.message for e in _validator(schema).iter_errors(body)], op_id
        reply = fuzz.send(method, path, data=body)
        answer = fuzz.check(reply, op_id, ids.get("image_id"))
        if op_id.startswith("download_private_image"):
            assert reply.status == 200
        else:
            assert answer["code"] == "Success", answer
        done.add(op_id)
        return None if answer is None else answer["data"]

    page = "?current=1&size=10&requestInfo=region0"
    ok("list_images", "/images" + page + "&filter=name:lk:a|&orderBy=createdAt:desc")
    ok("list_private_images", "/private-images" + page)
    ok("get_image", f"/images/{active}")
    ok("list_shared_images", "/shared-images" + page)
    ok("create_private_image", "/private-images", fuzz.bodies["create_private_image"])
    ok("import_image", "/private-images/import", fuzz.bodies["import_image"])
    ok(
        "update_private_image",
        f"/private-images/{fuzz.images['queued']}",
        update_body(diskFormat="qcow2"),
    )
    fresh = ok("create_private_image", "/private-images", fuzz.bodies["create_private_image"])
    ok("upload_prepare", f"/private-images/{fresh['imageId']}/upload-prepare", {"size": 10})
    ok("upload_done", f"/private-images/{fresh['imageId']}/upload-done", {"result": "failed"})
    ok("delete_private_image", f"/private-images/{fresh['imageId']}")
    ok("download_private_image", f"/private-images/{active}/file", image_id=active)
    ok("download_private_image_head", f"/private-images/{active}/file", image_id=active)
    ok("share_image", f"/private-images/{active}/share", {"shares": {"user_ids": [carol]}})
    shares = ok("list_image_shares", f"/private-images/{active}/share" + page)
    ok("unshare_image", f"/private-images/{active}/unshare", {"shares": {"user_ids": [carol]}})
    ok("share_image", f"/private-images/{active}/share", {"shares": {"user_ids": [carol]}})
    shares = ok("list_image_shares", f"/private-images/{active}/share" + page)
    ok("delete_shared_image", f"/shared-images/{shares['list'][0]['shareId']}")
    ok("list_export_buckets", f"/private-images/{active}/oss-bucket-list")
    ok("export_image", f"/custom-images/{active}/export", fuzz.bodies["export_image"])
    copy_path = f"/shared-images/{fuzz.shares['bob_to_alice']}/copy"
    ok("copy_shared_image", copy_path, fuzz.bodies["copy_shared_image"])
    assert done == set(OPS)


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_fuzz_bodies(fuzz: Fuzz, data: st.DataObject) -> None:
    """Malformed, mistyped, incomplete and oversized bodies on every body-taking endpoint."""
    op_id = data.draw(st.sampled_from(BODY_OPS), label="operation")
    image = image_for(data, op_id)
    share = data.draw(st.sampled_from(SHARE_KEYS), label="share")
    body = data.draw(bodies(fuzz.bodies[op_id]), label="body")
    method, *_ = OPS[op_id]
    fuzz.check(fuzz.send(method, path_for(fuzz, op_id, image, share), data=body), op_id)


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_fuzz_query_strings(fuzz: Fuzz, data: st.DataObject) -> None:
    """Odd ``current`` / ``size`` / ``filter`` / ``orderBy`` / unknown parameters."""
    op_id = data.draw(st.sampled_from([o for o in OPS if OPS[o][0] == "GET"]), label="operation")
    image = image_for(data, op_id)
    query = data.draw(query_strings(), label="query")
    reply = fuzz.send("GET", f"{path_for(fuzz, op_id, image)}?{query}")
    fuzz.check(reply, op_id, fuzz.images[image])


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_fuzz_path_ids(fuzz: Fuzz, data: st.DataObject) -> None:
    """Very long, unicode, encoded-slash, dot-dot and otherwise odd path ids."""
    op_id = data.draw(st.sampled_from([o for o in OPS if "{" in OPS[o][1]]), label="operation")
    method, template, _ = OPS[op_id]
    raw_id = data.draw(PATH_IDS, label="id")
    path = template.replace("{image_id}", raw_id).replace("{share_id}", raw_id)
    query = "?current=1&size=10" if needs_page(op_id) else ""
    fuzz.check(fuzz.send(method, path + query, data=fuzz.bodies.get(op_id)), op_id)


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_fuzz_headers(fuzz: Fuzz, data: st.DataObject) -> None:
    """Missing or odd ``x-regionid`` / ``Authorization`` and other odd headers."""
    op_id = data.draw(st.sampled_from(sorted(OPS)), label="operation")
    method = OPS[op_id][0]
    image = image_for(data, op_id) if method in ("GET", "HEAD") else "missing"
    headers = fuzz.headers(
        Authorization=data.draw(AUTH, label="auth"), **{"x-regionid": data.draw(REGIONS)}
    )
    headers.update(data.draw(EXTRA_HEADERS, label="extra headers"))
    query = "?current=1&size=10" if needs_page(op_id) else ""
    body = fuzz.bodies.get(op_id)
    raw = json.dumps(body).encode() if body is not None else None
    reply = fuzz.send(method, path_for(fuzz, op_id, image) + query, headers=headers, data=raw)
    fuzz.check(reply, op_id, fuzz.images[image])


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_fuzz_download(fuzz: Fuzz, data: st.DataObject) -> None:
    """Downloads of images in every state, with odd ``Range`` headers."""
    op_id = data.draw(st.sampled_from(["download_private_image", "download_private_image_head"]))
    image = data.draw(st.sampled_from(IMAGE_KEYS), label="image")
    range_header = data.draw(RANGES, label="range")
    headers = fuzz.headers(Range=range_header)
    reply = fuzz.send(OPS[op_id][0], path_for(fuzz, op_id, image), headers=headers)
    fuzz.check(reply, op_id, fuzz.images[image])
    if reply.status == 416:
        assert reply.headers["Content-Range"].startswith("bytes */")


METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND")


def test_wrong_methods_answer_405_envelope(fuzz: Fuzz) -> None:
    """Every API path, every method it does not take: HTTP 405, ``IMG.InvalidParameter``
    naming the method, ``Allow`` listing the ones it takes."""
    routes = [(m, re.compile(re.sub(r"\{\w+\}", "[^/]+", t) + "$")) for m, t, _ in OPS.values()]
    checked = 0
    for template in {template for _, template, _ in OPS.values()}:
        path = template.replace("{image_id}", NO_SUCH_IMAGE).replace("{share_id}", NO_SUCH_SHARE)
        # /private-images/import also matches /private-images/{image_id}
        methods = {method for method, pattern in routes if pattern.match(path)}
        for method in METHODS:
            if method in methods:
                continue
            reply = fuzz.send(method, path, data=b"{}")
            assert reply.status == 405, (method, path, reply)
            assert set(reply.headers["Allow"].replace(" ", "").split(",")) == methods
            body = fuzz.check(reply, None)
            if method != "HEAD":
                assert body["code"] == "IMG.InvalidParameter"
                assert f"{method} not allowed" in body["message"]
            checked += 1
    assert checked > 80


@pytest.mark.parametrize(
    "path",
    ["", "/", "/nope", "/images/", "/private-images/img-abc/nope", "/shared-images/x/y/z",
     "/custom-images", "/custom-images/img-abc", "/IMAGES", "/images/img-abc/"],
)  # fmt: skip
def test_unknown_paths_answer_404_envelope(fuzz: Fuzz, path: str) -> None:
    reply = fuzz.send("GET", path)
    assert reply.status == 404, reply
    body = fuzz.check(reply, None)
    assert body["code"] == "IMG.InvalidParameter" and "no endpoint" in body["message"]


# --- regressions of what the fuzzing found ---------------------------------------------------


def test_regression_body_too_large_is_an_envelope(fuzz: Fuzz) -> None:
    reply = fuzz.send("POST", "/private-images", data=b"x" * (5 * MIB))
    assert reply.status == 413
    assert fuzz.check(reply, "create_private_image")["code"] == "IMG.InvalidParameter"


def test_regression_unsatisfiable_range_is_an_envelope(fuzz: Fuzz) -> None:
    path = f"/private-images/{fuzz.images['active']}/file"
    reply = fuzz.send("GET", path, headers=fuzz.headers(Range="bytes=100000-"))
    assert reply.status == 416 and reply.headers["Content-Range"].startswith("bytes */")
    body = fuzz.check(reply, "download_private_image")
    assert body["code"] == "IMG.InvalidParameter" and "Range" in body["message"]


def test_regression_deeply_nested_json_is_invalid_parameter(fuzz: Fuzz) -> None:
    """Was IMG.Internal.Error (RecursionError in json.loads, or when storing the image)."""
    nested: Any = 1
    for _ in range(900):
        nested = [nested]
    create = fuzz.bodies["create_private_image"]
    for body in (b"[" * 100_000, json.dumps({**create, "imageTags": [nested]}).encode()):
        reply = fuzz.send("POST", "/private-images", data=body)
        answer = fuzz.check(reply, "create_private_image")
        assert answer["code"] == "IMG.InvalidParameter" and "body" in answer["message"]


def test_regression_lone_surrogate_is_invalid_parameter(fuzz: Fuzz) -> None:
    """Was IMG.Internal.Error (UnicodeEncodeError when storing ``"\\ud800"``)."""
    create = fuzz.bodies["create_private_image"]
    for field in ("osVersion", "description", "departmentId", "nope"):
        reply = fuzz.send("POST", "/private-images", data={**create, field: "a\ud800b"})
        answer = fuzz.check(reply, "create_private_image")
        assert answer["code"] == "IMG.InvalidParameter" and "surrogate" in answer["message"]
    # a surrogate *pair* is just an escaped astral character: fine
    reply = fuzz.send("POST", "/private-images", data={**create, "description": "ok 😀"})
    assert fuzz.check(reply, "create_private_image")["data"]["describe"] == "ok 😀"


def test_regression_malformed_url_is_invalid_parameter(fuzz: Fuzz) -> None:
    """Was IMG.Internal.Error (urlsplit raises ValueError on an unclosed IPv6 literal)."""
    body = fuzz.bodies["import_image"]
    volume = [{"imageUrl": "https://[::1/x", "minDisk": 1}]
    cases = [({"imageUrl": "http://[::1"}, "imageUrl"), ({"volumeImages": volume}, "volumeImages")]
    for bad, field in cases:
        reply = fuzz.send("POST", "/private-images/import", data={**body, **bad})
        answer = fuzz.check(reply, "import_image")
        assert answer["code"] == "IMG.InvalidParameter" and field in answer["message"]


def test_regression_undecodable_body_is_invalid_parameter(fuzz: Fuzz) -> None:
    """Was IMG.Internal.Error (RequestPayloadError from request.read()): a body that
    does not match its Content-Encoding, arriving after the headers."""

    async def call() -> Reply:
        async def late_body() -> Any:
            await anyio.sleep(0.2)
            yield b"this is not gzip"

        url = f"{fuzz.base}/private-images"
        headers = {**fuzz.headers(), "Content-Encoding": "gzip"}
        async with fuzz.http.post(url, data=late_body(), headers=headers) as answer:
            return Reply("POST", url, answer.status, answer.headers, await answer.read())

    answer = fuzz.check(fuzz.portal.call(call), "create_private_image")
    assert answer["code"] == "IMG.InvalidParameter"
    assert "cannot read the body" in answer["message"]


def test_http_layer_rejections_stay_below_500(fuzz: Fuzz) -> None:
    """What aiohttp's HTTP parser rejects never reaches the application, so it is
    not answered with the envelope -- but never with a 5xx either: a Content-Encoding
    aiohttp cannot decode (br / zstd without their optional packages), a request line
    or header over 8190 bytes."""
    body = json.dumps(fuzz.bodies["create_private_image"]).encode()
    cases = [
        ("POST", "/private-images", {"Content-Encoding": "br"}, body),
        ("POST", "/private-images", {"Content-Encoding": "zstd"}, body),
        ("GET", "/images/" + "a" * 9000, {}, None),
        ("GET", "/images?current=1&size=10", {"x-regionid": "r" * 9000}, None),
    ]
    for method, path, extra, data in cases:
        reply = fuzz.send(method, path, headers={**fuzz.headers(), **extra}, data=data)
        assert 400 <= reply.status < 500, (method, path, extra, reply.status, reply.body[:200])

    async def raw(request: bytes) -> bytes:  # what aiohttp's client refuses to send
        reader, writer = await asyncio.open_connection("127.0.0.1", fuzz.emu.port)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read(100)
        finally:
            writer.close()
            await writer.wait_closed()

    for request in (
        b"GET /api/image/v1/images?current=1&size=1 HTTP/1.1\r\nx-regionid: a\x01b\r\n\r\n",
        b"GET /api/image/v1/images/a\x00b HTTP/1.1\r\nx-regionid: r\r\n\r\n",
    ):
        status = fuzz.portal.call(raw, request).split(b"\r\n", 1)[0]
        assert status.split(b" ")[1] == b"400", (request, status)
