"""aioims._json: the one rule for decoding API bodies (orjson when installed,
else json.loads), and decode_response through it.

Every body must give what ``json.loads(body)`` gives: the same value (same
types, floats by ``repr``, same key order) or the same exception.  Each test
runs with orjson's path (skipped without the ``speedups`` extra) and with the
standard-library fallback (orjson made absent by patching the chosen loader).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import ims_vendor_examples as ex
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioims import _json, _protocol, errors
from aioims._protocol import decode_response

VENDOR_SUCCESS = [
    ex.LIST_IMAGES, ex.GET_IMAGE, ex.UPDATE_RESPONSE, ex.CREATE_RESPONSE,
    ex.UPLOAD_PREPARE_RESPONSE, ex.UPLOAD_DONE_RESPONSE, ex.LIST_PRIVATE_IMAGES,
    ex.DELETE_RESPONSE, ex.SHARE_RESPONSE, ex.LIST_IMAGE_SHARES, ex.LIST_SHARED_IMAGES,
    ex.DELETE_SHARED_RESPONSE, ex.IMPORT_RESPONSE, ex.LIST_EXPORT_BUCKETS,
    ex.EXPORT_RESPONSE, ex.COPY_RESPONSE,
]  # fmt: skip


def vendor_page(images: int) -> bytes:
    """The vendor's private-images example with ``images`` items (distinct ids),
    as the server would send it (compact, UTF-8)."""
    payload = ex.load(ex.LIST_PRIVATE_IMAGES)
    item = payload["data"]["list"][0]
    payload["data"]["list"] = [{**item, "id": n, "imageId": f"img-{n:014d}"} for n in range(images)]
    payload["data"].update(size=images, total=images)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class Spy:
    """Wraps orjson's loads: how often it ran, and how often it answered."""

    def __init__(self, inner: Callable[[bytes], Any]) -> None:
        self.inner = inner
        self.calls = 0
        self.answered = 0

    def __call__(self, body: bytes) -> Any:
        self.calls += 1
        value = self.inner(body)
        self.answered += 1
        return value


@pytest.fixture(params=["orjson", "stdlib"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "orjson":
        orjson = pytest.importorskip("orjson")
        monkeypatch.setattr(_json, "_orjson_loads", orjson.loads)
    else:
        monkeypatch.setattr(_json, "_orjson_loads", None)  # as without the extra
    yield request.param


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    orjson = pytest.importorskip("orjson")
    wrapped = Spy(orjson.loads)
    monkeypatch.setattr(_json, "_orjson_loads", wrapped)
    return wrapped


def same(a: Any, b: Any) -> bool:
    """Equal, with equal types all the way down, floats compared by repr
    (nan, -0.0) and dict keys in the same order (iterative: deep bodies)."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if repr(x) != repr(y):
                return False
        elif isinstance(x, dict):
            if list(x) != list(y):
                return False
            pending.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y))
        elif x != y:
            return False
    return True


def outcome(loads: Callable[[Any], Any], body: Any) -> tuple[Any, ...]:
    try:
        return ("value", loads(body))
    except Exception as exc:  # RecursionError included
        return ("error", type(exc), str(exc))


def assert_like_stdlib(body: Any) -> None:
    expected, got = outcome(json.loads, body), outcome(_json.loads, body)
    assert expected[0] == got[0], (body[:80], expected, got)
    if expected[0] == "value":
        assert same(expected[1], got[1]), (body[:80], expected[1], got[1])
    else:
        assert expected[1:] == got[1:], (body[:80], expected, got)


# --- the one rule --------------------------------------------------------------


def test_decode_response_goes_through_the_one_loader(spy: Spy) -> None:
    assert _protocol.loads is _json.loads
    envelope = decode_response(200, {}, vendor_page(10))
    assert (spy.calls, spy.answered) == (1, 1)
    assert len(envelope.data["list"]) == 10


def test_orjson_is_found_when_installed() -> None:
    orjson = pytest.importorskip("orjson")
    assert _json._find_orjson() is orjson.loads


def test_no_orjson_means_the_standard_library(monkeypatch: pytest.MonkeyPatch) -> None:
    # an import that fails, as without the extra
    monkeypatch.setitem(sys.modules, "orjson", None)
    chosen = _json._find_orjson()
    assert chosen is None
    monkeypatch.setattr(_json, "_orjson_loads", chosen)
    body = vendor_page(3)
    assert same(_json.loads(body), json.loads(body))
    assert decode_response(200, {}, body).data["total"] == 3


def test_fallback_never_calls_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_json, "_orjson_loads", None)
    body = vendor_page(2)
    calls: list[Any] = []
    original = json.loads

    def stdlib(body: Any) -> Any:
        calls.append(body)
        return original(body)

    monkeypatch.setattr(_json.json, "loads", stdlib)
    assert decode_response(200, {}, body).data["total"] == 2
    assert calls == [body]


# --- real payloads -------------------------------------------------------------


@pytest.mark.parametrize("text", VENDOR_SUCCESS)
def test_vendor_examples_decode_identically(mode: str, text: str) -> None:
    body = text.encode()
    assert same(_json.loads(body), json.loads(body))
    envelope = decode_response(200, {}, body)
    assert same(envelope.data, json.loads(body).get("data"))


@pytest.mark.parametrize("images", [1, 10, 100])
def test_a_page_decodes_identically(mode: str, images: int) -> None:
    body = vendor_page(images)
    assert same(_json.loads(body), json.loads(body))


def test_a_page_takes_orjson(spy: Spy) -> None:
    # "owner" is a 19-digit string: it must not push real pages off the fast path
    body = vendor_page(100)
    assert b'"owner":"7074927169066926081"' in body
    assert same(_json.loads(body), json.loads(body))
    assert spy.answered == 1


# --- bodies where orjson and json.loads differ ------------------------------------

DIFFERENT = [
    b"NaN", b"Infinity", b"-Infinity", b'{"code":"Success","data":[NaN,Infinity,-Infinity]}',
    b"1e400", b"-1e400", b"1.7976931348623159e308", b'{"size":1e999}',
    # integers beyond 64 bits (orjson makes floats of them, silently)
    b"18446744073709551616", b"-9223372036854775809", b'{"id":123456789012345678901234567890}',
    b'{"a":[1,-99999999999999999999]}', b"1" * 5000,  # past int's 4300 digits: ValueError
    # strings
    b'"\\ud800"', b'"\\udfff\\ud800"', b'{"name":"\\ud83d"}', b'"\xed\xa0\x80"', b'"\xff"',
    b'"\xc0\x80"',
    # encodings: BOM, UTF-16/32 (detected by json.loads)
    b'\xef\xbb\xbf{"code":"Success"}', '{"code":"Success"}'.encode("utf-16"),
    '{"a":1}'.encode("utf-16-le"), '{"a":1}'.encode("utf-32"), b"1\x00",
    # nesting beyond the standard library's recursion allowance (RecursionError)
    b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000, b"[" * 2000,
    # invalid JSON, blank
    b"", b" ", b"\n\t", b"{", b'{"code":"Success",}', b"[1,]", b"1 2", b"tru", b"\x0c1",
    b'"a\x00"', b"01", b"-", b".5", b"1.",
]  # fmt: skip

SAME = [
    b'{"a":1,"b":2,"a":3}', b'{"a":{"x":1},"a":[2]}',  # duplicate keys: last value, first place
    b"-0", b"-0.0", b"0.1000000000000000055511151231257827", b"1.7976931348623157e308",
    b"4.9e-324", b"2.4703282292062327e-324", b"1e-400", b"1E5", b"1e+5", b"1.0E-5",
    b"9223372036854775807", b"9223372036854775808", b"18446744073709551615",
    b"-9223372036854775808", b'"7074927169066926081"', b'"\\u0000\\u00e9\\ud83d\\ude00"',
    "é😀".join(['"', '"']).encode(), b'"\x7f"', b"\t\n\r 1 \r\n", b"[" * 500 + b"]" * 500,
    b"true", b"false", b"null", b'{"a" : [ ] , "b" : { } }',
]  # fmt: skip


@pytest.mark.parametrize("body", DIFFERENT + SAME, ids=lambda b: repr(b[:30]))
def test_body_decodes_like_json_loads(mode: str, body: bytes) -> None:
    assert_like_stdlib(body)


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, 10**40, -(10**25), 2**63, 2**64 - 1, -(2**63), 10**18],
)
def test_big_integers_stay_exact(mode: str, value: int) -> None:
    body = b'{"code":"Success","data":{"size":%d,"list":[%d]}}' % (value, value)
    data = decode_response(200, {}, body).data
    assert type(data["size"]) is int and data["size"] == value
    assert data["list"] == [value]


def test_nan_in_a_success_envelope(mode: str) -> None:
    envelope = decode_response(200, {}, b'{"code":"Success","data":{"x":NaN,"y":-Infinity}}')
    assert repr(envelope.data) == "{'x': nan, 'y': -inf}"


def test_not_bytes_is_the_standard_library(mode: str) -> None:
    for body in ['{"a":1}', bytearray(b'{"a":1}'), '"\ud800"', "\ufeff{}"]:
        assert_like_stdlib(body)
    with pytest.raises(TypeError):  # json.loads refuses a memoryview; orjson would not
        _json.loads(memoryview(b'{"a":1}'))


# --- malformed bodies: the same typed SDK errors --------------------------------


@pytest.mark.parametrize(
    "body", [b"", b"{", b'{"code":"Success",', b"\xff\xfe\x00", b"<html>502</html>", b"[1,]"]
)
def test_malformed_body_is_a_decode_error(mode: str, body: bytes) -> None:
    with pytest.raises(errors.DecodeError) as info:
        decode_response(200, {"x-request-id": "hdr-7"}, body)
    assert "is not JSON" in str(info.value)
    assert (info.value.http_status, info.value.request_id) == (200, "hdr-7")


def test_malformed_5xx_is_a_server_error(mode: str) -> None:
    with pytest.raises(errors.ServerHTTPError) as info:
        decode_response(503, {"Retry-After": "2"}, b'{"code":')
    assert info.value.http_status == 503 and info.value.retry_after == 2.0


def test_deep_nesting_raises_as_before(mode: str) -> None:
    body = b'{"code":"Success","data":' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(RecursionError):
        json.loads(body)
    with pytest.raises(RecursionError):
        decode_response(200, {}, body)


# --- any JSON value ------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=VALUES, ascii_only=st.booleans(), pad=st.sampled_from(["", " ", "\n", "\t\r"]))
def test_any_json_value_decodes_like_json_loads(value: Any, ascii_only: bool, pad: str) -> None:
    text = pad + json.dumps(value, ensure_ascii=ascii_only) + pad
    body = text.encode("utf-8", "surrogatepass")
    for chosen in (_json._find_orjson(), None):
        original = _json._orjson_loads
        _json._orjson_loads = chosen
        try:
            assert_like_stdlib(body)
        finally:
            _json._orjson_loads = original
