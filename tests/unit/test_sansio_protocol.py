"""aioims._protocol: building requests and decoding answers, with no I/O and
no event loop (plain synchronous tests)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import ims_vendor_examples as ex
import pytest

from aioims import errors
from aioims._protocol import (
    PreparedRequest,
    RetryMode,
    build_request,
    decode_response,
    encode_query,
    is_retryable,
    is_transient,
    parse_retry_after,
    quote_segment,
)

BASE = "https://ims.example.com/api/image/v1"

# --- build_request -------------------------------------------------------------


def test_build_get_request() -> None:
    req = build_request("get", BASE, "/images", region="region0", params={"current": 1, "size": 10})
    assert req.method == "GET"
    assert req.url == BASE + "/images"
    assert req.path == "/images"
    assert req.params == {"current": "1", "size": "10"}
    assert req.full_url == BASE + "/images?current=1&size=10"
    assert req.headers["x-regionid"] == "region0"
    assert "Content-Type" not in req.headers
    assert req.body == b""


def test_request_info_comes_first_and_none_is_dropped() -> None:
    req = build_request(
        "GET", BASE, "/shared-images", region="region0", request_info=True,
        params={"orderBy": "createdAt:desc", "current": 1, "size": 10, "x": None},
    )  # fmt: skip
    assert req.query_string == "requestInfo=region0&orderBy=createdAt:desc&current=1&size=10"


def test_filter_is_encoded_like_the_vendor_example() -> None:
    req = build_request(
        "GET", BASE, "/private-images", region="region77", request_info=True,
        params={"filter": "name:lk:1|imageId:eq:1|", "current": 1, "size": 10},
    )  # fmt: skip
    # The reference: private-images?requestInfo=region77&filter=name:lk:1%7CimageId:eq:1%7C&...
    assert req.query_string == (
        "requestInfo=region77&filter=name:lk:1%7CimageId:eq:1%7C&current=1&size=10"
    )


def test_query_escapes_reserved_and_unicode() -> None:
    assert encode_query({"filter": "name:lk:a b&c=d/镜像"}) == (
        "filter=name:lk:a%20b%26c%3Dd%2F%E9%95%9C%E5%83%8F"
    )


def test_json_body_is_compact_utf8() -> None:
    body = json.loads(ex.COPY_REQUEST)
    req = build_request("POST", BASE, "/shared-images/x/copy", region="r", json_body=body)
    assert req.headers["Content-Type"] == "application/json"
    assert req.body == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert "名称".encode() in req.body
    assert json.loads(req.body) == body


def test_user_agent_and_bool_params() -> None:
    req = build_request("GET", BASE, "/x", region="r", params={"a": True}, user_agent="ua/1")
    assert req.headers["User-Agent"] == "ua/1"
    assert req.params == {"a": "true"}


def test_quote_segment() -> None:
    assert quote_segment("img-kvvfk28fcjc0mt") == "img-kvvfk28fcjc0mt"
    assert quote_segment("a/b?c#d e") == "a%2Fb%3Fc%23d%20e"


def test_prepared_request_copy_and_repr() -> None:
    req = build_request("PUT", BASE, "/p", region="r", json_body={"a": 1})
    req.headers["Authorization"] = "Bearer super-secret"
    clone = req.copy()
    clone.headers["X"] = "1"
    clone.params["y"] = "2"
    assert "X" not in req.headers and "y" not in req.params
    assert "super-secret" not in repr(req)
    assert "Authorization" in repr(req)
    assert isinstance(req, PreparedRequest)


# --- decode_response -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        ex.LIST_IMAGES, ex.GET_IMAGE, ex.UPDATE_RESPONSE, ex.CREATE_RESPONSE,
        ex.UPLOAD_PREPARE_RESPONSE, ex.UPLOAD_DONE_RESPONSE, ex.LIST_PRIVATE_IMAGES,
        ex.DELETE_RESPONSE, ex.SHARE_RESPONSE, ex.LIST_IMAGE_SHARES, ex.LIST_SHARED_IMAGES,
        ex.DELETE_SHARED_RESPONSE, ex.IMPORT_RESPONSE, ex.LIST_EXPORT_BUCKETS,
        ex.EXPORT_RESPONSE, ex.COPY_RESPONSE,
    ],
)  # fmt: skip
def test_decode_every_vendor_success_example(text: str) -> None:
    payload = json.loads(text)
    envelope = decode_response(200, {}, text.encode())
    assert envelope.code == "Success"
    assert envelope.message == "调用成功"
    assert envelope.request_id == payload["requestId"]
    assert envelope.data == payload.get("data")
    assert envelope.http_status == 200


def test_missing_data_and_message_are_tolerated() -> None:
    envelope = decode_response(200, {}, b'{"code": "Success"}')
    assert envelope.data is None and envelope.message == "" and envelope.request_id is None


# Expected class for every code of the reference's error table.
EXPECTED: dict[str, type[errors.ApiError]] = {
    "IMG.InvalidParameter": errors.InvalidParameterError,
    "IMG.DBGet.Fail": errors.ServiceError,
    "IMG.DBUpdate.Fail": errors.ServiceError,
    "IMG.DBGet.NoData": errors.NotFoundError,
    "IMG.Internal.Error": errors.ServiceError,
    "IMG.OperationFailed.ImageSize": errors.UploadRejectedError,
    "IMG.OperationFailed.UploadError": errors.UploadRejectedError,
    "IMG.OperationDenied.ActionNotMatchStatus": errors.InvalidStateError,
    "IMG.OperationFailed.MinDiskSize": errors.MinDiskError,
    "IMG.OperationFailed.UploadNotAllowed": errors.UploadNotAllowedError,
    "IMG.OperationFailed.DownloadNotAllowed": errors.DownloadNotAllowedError,
    "IMG.OperationFailed.DownloadNotallowed": errors.DownloadNotAllowedError,
    "IMG.OperationFailed.DeleteNotAllowed": errors.DeleteNotAllowedError,
    "IMG.OperationFailed.UploadNotPermission": errors.UploadRejectedError,
    "IMG.OperationFailed.UserInfo": errors.AuthenticationError,
    "IMG.OperationDenied.Identity": errors.PermissionDeniedError,
    "IMG.OperationDenied.Quota": errors.QuotaError,
    "IMG.OperationDenied.QuotaNotEnough": errors.QuotaError,
    "IMG.OperationDenied.QuotaDeduct": errors.QuotaError,
    "IMG.OperationFailed.Transfer": errors.QuotaError,
    "IMG.OperationDenied.AuthFail": errors.AuthenticationError,
    "IMG.OperationFailed.ResourceCenter": errors.OperationFailedError,
    "IMG.OperationFailed.ModifyMinDiskSize": errors.MinDiskError,
    "IMG.OperationFailed.ActionNotMatch": errors.ShareError,
    "IMG.OperationFailed.DuplicateUserId": errors.ShareError,
    "IMG.OperationFailed.InvalidUserId": errors.ShareError,
    "IMG.OperationFailed.AlreadyShared": errors.ShareError,
    "IMG.OperationFailed.NotShared": errors.ShareError,
    "IMG.OperationFailed.ResourceInfo": errors.OperationFailedError,
    "IMG.OperationFailed.ResourceStatus": errors.InvalidStateError,
    "IMG.OperationFailed.ImageIsShared": errors.ImageIsSharedError,
}


def test_expected_table_covers_the_reference() -> None:
    assert sorted(EXPECTED) == sorted(ex.ERROR_CODES)


@pytest.mark.parametrize("code", ex.ERROR_CODES)
def test_every_error_code_is_mapped(code: str) -> None:
    body = json.dumps(ex.error_envelope(code, "错误信息", "rid-42")).encode()
    with pytest.raises(errors.ApiError) as info:
        decode_response(400, {"Content-Type": "application/json"}, body)
    error = info.value
    assert type(error) is EXPECTED[code]
    assert (error.code, error.message, error.request_id, error.http_status) == (
        code, "错误信息", "rid-42", 400,
    )  # fmt: skip
    assert code in str(error) and "rid-42" in str(error)


def test_special_families() -> None:
    assert issubclass(errors.UploadNotAllowedError, errors.InvalidStateError)
    assert issubclass(errors.ImageIsSharedError, errors.ShareError)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("IMG.OperationDenied.SomethingNew", errors.PermissionDeniedError),
        ("IMG.OperationFailed.SomethingNew", errors.OperationFailedError),
        ("IMG.DBDelete.Fail", errors.ServiceError),
        ("Fail", errors.ApiError),
    ],
)
def test_unknown_codes_map_by_prefix(code: str, cls: type[errors.ApiError]) -> None:
    with pytest.raises(cls) as info:
        decode_response(400, {}, json.dumps({"code": code, "message": "m"}).encode())
    assert info.value.code == code


def test_non_success_code_in_http_200_is_an_error() -> None:
    body = json.dumps(ex.error_envelope("IMG.DBGet.NoData")).encode()
    with pytest.raises(errors.NotFoundError) as info:
        decode_response(200, {}, body)
    assert info.value.http_status == 200


def test_request_id_prefers_the_envelope_then_the_header() -> None:
    body = json.dumps(ex.error_envelope("IMG.InvalidParameter", request_id="env-1")).encode()
    with pytest.raises(errors.ApiError) as info:
        decode_response(400, {"X-Request-Id": "hdr-1"}, body)
    assert info.value.request_id == "env-1"
    body = json.dumps({"code": "IMG.InvalidParameter", "message": "m"}).encode()
    with pytest.raises(errors.ApiError) as info:
        decode_response(400, {"X-Request-Id": "hdr-1"}, body)
    assert info.value.request_id == "hdr-1"
    envelope = decode_response(200, {"x-request-id": "hdr-2"}, b'{"code":"Success"}')
    assert envelope.request_id == "hdr-2"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_5xx_and_429_without_envelope(status: int) -> None:
    with pytest.raises(errors.ServerHTTPError) as info:
        decode_response(
            status, {"Retry-After": "7", "x-request-id": "gw"}, b"<html>Bad Gateway</html>"
        )
    error = info.value
    assert isinstance(error, errors.TransportError)
    assert error.http_status == status and error.retry_after == 7 and error.request_id == "gw"
    assert "Bad Gateway" in str(error)


def test_5xx_with_an_img_envelope_is_the_api_error() -> None:
    body = json.dumps(ex.error_envelope("IMG.Internal.Error")).encode()
    with pytest.raises(errors.ServiceError) as info:
        decode_response(500, {}, body)
    assert info.value.http_status == 500


def test_5xx_with_a_foreign_json_code() -> None:
    with pytest.raises(errors.ServerHTTPError):
        decode_response(503, {}, b'{"code": "ServiceUnavailable", "message": "busy"}')


def test_5xx_with_success_envelope() -> None:
    with pytest.raises(errors.ServerHTTPError):
        decode_response(502, {}, b'{"code": "Success"}')


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>login</html>"),
        (200, b""),
        (200, b"[1, 2]"),
        (200, b'{"requestId": "x", "data": {}}'),  # no code
        (200, b'{"code": 0}'),  # code not a string
        (200, b"\xff\xfe\x00"),
        (404, b"404 page not found"),
        (401, b""),
        (400, b'{"code": "Success", "data": null}'),
    ],
)
def test_not_an_envelope_is_a_decode_error(status: int, body: bytes) -> None:
    with pytest.raises(errors.DecodeError) as info:
        decode_response(status, {}, body)
    assert info.value.http_status == status
    assert isinstance(info.value, errors.TransportError)


def test_204_without_body_is_empty_success() -> None:
    assert decode_response(204, {}, b"").data is None


# --- Retry-After ------------------------------------------------------------------


NOW = datetime(2025, 5, 30, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", 0.0),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Fri, 30 May 2025 12:00:10 GMT", 10.0),
        ("Fri, 30 May 2025 11:59:00 GMT", 0.0),  # in the past
        ("Friday, 30-May-25 12:01:00 GMT", 60.0),  # RFC 850
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


# --- retry decisions ----------------------------------------------------------------


def _api(code: str) -> errors.ApiError:
    return errors.error_class_for(code)("m", code=code, http_status=400)


TRANSIENT = [
    _api("IMG.DBGet.Fail"),
    _api("IMG.DBUpdate.Fail"),
    _api("IMG.Internal.Error"),
    errors.ServerHTTPError("x", http_status=503),
    errors.ServerHTTPError("x", http_status=500),
    errors.ServerHTTPError("x", http_status=429),
    errors.ConnectionFailedError("x"),
    errors.RequestTimeoutError("x"),
]
PERMANENT = [
    _api("IMG.InvalidParameter"),
    _api("IMG.DBGet.NoData"),
    _api("IMG.OperationFailed.ImageIsShared"),
    errors.DecodeError("x", http_status=200),
    errors.ValidationError("x"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=repr)
def test_transient_errors(error: errors.IMSError) -> None:
    assert is_transient(error)
    assert is_retryable(error, RetryMode.SAFE)
    assert not is_retryable(error, RetryMode.NEVER)
    assert not is_retryable(error, RetryMode.NEVER, request_sent=False)


@pytest.mark.parametrize("error", PERMANENT, ids=repr)
def test_permanent_errors(error: errors.IMSError) -> None:
    assert not is_transient(error)
    for mode in RetryMode:
        assert not is_retryable(error, mode, request_sent=False)


def test_unsent_only_mode() -> None:
    refused = errors.ConnectionFailedError("refused")
    assert is_retryable(refused, RetryMode.UNSENT_ONLY, request_sent=False)
    assert not is_retryable(refused, RetryMode.UNSENT_ONLY, request_sent=True)
    assert not is_retryable(errors.RequestTimeoutError("t"), RetryMode.UNSENT_ONLY)
    assert not is_retryable(errors.ServerHTTPError("x", http_status=503), RetryMode.UNSENT_ONLY)
    assert not is_retryable(_api("IMG.Internal.Error"), RetryMode.UNSENT_ONLY)
    assert is_retryable(errors.ServerHTTPError("x", http_status=429), RetryMode.UNSENT_ONLY)


def test_non_ims_exceptions_are_never_retried() -> None:
    assert not is_retryable(RuntimeError("x"), RetryMode.SAFE)
