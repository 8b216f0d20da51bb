"""The IMS wire protocol, sans I/O.

Pure functions and plain data only — no sockets, no event loop — so every
rule of the protocol is testable synchronously (in the spirit of gidgethub's
``sansio``):

* :func:`build_request` turns an endpoint call into a :class:`PreparedRequest`
  (method, URL, headers, query, JSON body bytes);
* :func:`decode_response` turns ``(status, headers, body)`` into an
  :class:`Envelope` or raises the mapped :mod:`aioims.errors` exception (the
  body decoded by :func:`aioims._json.loads`: ``json.loads``' results, by
  orjson where installed);
* :func:`is_retryable` decides whether a failure may be retried for a call of
  a given :class:`RetryMode`;
* :func:`parse_retry_after` reads a ``Retry-After`` header.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import attrs

from ._json import loads
from .errors import (
    TRANSIENT_CODES,
    ApiError,
    ConnectionFailedError,
    DecodeError,
    IMSError,
    RequestTimeoutError,
    ServerHTTPError,
    error_class_for,
)

SUCCESS_CODE = "Success"
JSON_CONTENT_TYPE = "application/json"

# Characters left unescaped in query values: the vendor's example keeps ``:``
# in ``filter=name:lk:1%7CimageId:eq:1%7C`` and escapes ``|``.
_QUERY_SAFE = ":,"
# Text that ``quote`` returns unchanged (its always-safe characters, plus the
# query's safe ones for values): most ids, keys and values, which then skip it.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.~:,-]*").fullmatch


class RetryMode(enum.Enum):
    """How safe it is to send a call again."""

    #: Idempotent (GET, PUT, DELETE, upload-prepare, upload-done): retried on
    #: every transient failure.
    SAFE = "safe"
    #: Not idempotent but harmless when the request surely did not arrive
    #: (share, unshare, export): retried only when the connection could not be
    #: established (nothing was sent) or on HTTP 429 (explicitly rejected).
    UNSENT_ONLY = "unsent-only"
    #: Creates a resource (create, import, copy): never retried.
    NEVER = "never"


@attrs.define(kw_only=True)
class PreparedRequest:
    """An outgoing request, as an auth hook sees (and may amend) it.

    ``url`` has no query string; ``params`` holds the query (str -> str, in
    order); ``body`` is the exact bytes that will be sent (``b""`` when none).
    ``path`` is the API path (``/images/img-…``) used in logs.
    """

    # Built by _prepared() without __init__ (on every call): plain fields only.

    method: str
    url: str
    headers: dict[str, str] = attrs.field(factory=dict)
    params: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    path: str = ""

    @property
    def query_string(self) -> str:
        """The encoded query, e.g. ``requestInfo=region0&current=1&size=10``."""
        return encode_query(self.params)

    @property
    def full_url(self) -> str:
        if not self.params:
            return self.url
        query = encode_query(self.params)
        return f"{self.url}?{query}" if query else self.url

    def copy(self) -> PreparedRequest:
        """A copy whose ``headers`` and ``params`` are new dicts (one per attempt)."""
        if self.__class__ is not PreparedRequest:  # a subclass may have more fields
            return attrs.evolve(self, headers=dict(self.headers), params=dict(self.params))
        return _prepared(
            self.method, self.url, dict(self.headers), dict(self.params), self.body, self.path
        )

    def __repr__(self) -> str:
        # Header values may be credentials: never shown.
        return (
            f"PreparedRequest(method={self.method!r}, url={self.full_url!r}, "
            f"headers={sorted(self.headers)!r}, body={len(self.body)} bytes)"
        )


@attrs.frozen
class Envelope:
    """A decoded successful answer."""

    data: Any
    request_id: str | None
    code: str = SUCCESS_CODE
    message: str = ""
    http_status: int = 200


def encode_query(params: Mapping[str, str]) -> str:
    if not params:
        return ""
    parts = []
    for k, v in params.items():
        key, value = str(k), str(v)
        # ASCII letters and digits (most keys, numbers): nothing to escape
        if not (key.isascii() and key.isalnum()) and _PLAIN_KEY(key) is None:
            key = quote(key, safe="")
        if not (value.isascii() and value.isalnum()) and _PLAIN_VALUE(value) is None:
            value = quote(value, safe=_QUERY_SAFE)
        parts.append(f"{key}={value}")
    return "&".join(parts)


def quote_segment(value: str) -> str:
    """Escape one path segment (an image or share id)."""
    if value.__class__ is str and _PLAIN_KEY(value) is not None:
        return value  # nothing to escape (an id usually)
    return quote(value, safe="")


def _query_value(value: Any) -> str:
    if value.__class__ is str or value.__class__ is int:
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build_request(
    method: str,
    base_url: str,
    path: str,
    *,
    region: str,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    request_info: bool = False,
    user_agent: str | None = None,
) -> PreparedRequest:
    """Prepare one IMS call.

    ``path`` is relative to the API root (``/images``) with path parameters
    already escaped (see :func:`quote_segment`).  ``None`` query values are
    dropped.  ``request_info`` adds ``requestInfo=<region>`` first in the
    query, as the vendor's examples do.  ``json_body`` (when not ``None``) is
    serialised compactly with ``Content-Type: application/json``.
    """
    query: dict[str, str] = {}
    if request_info:
        query["requestInfo"] = region
    if params:
        for key, value in params.items():
            if value is not None:
                query[key] = value if value.__class__ is str else _query_value(value)
    headers = {"x-regionid": region, "Accept": JSON_CONTENT_TYPE}
    if user_agent:
        headers["User-Agent"] = user_agent
    body = b""
    if json_body is not None:
        body = encode_json(json_body)
        headers["Content-Type"] = JSON_CONTENT_TYPE
    return _prepared(method.upper(), base_url.rstrip("/") + path, headers, query, body, path)


def _prepared(
    method: str, url: str, headers: dict[str, str], params: dict[str, str], body: bytes, path: str
) -> PreparedRequest:
    """``PreparedRequest(method=..., ...)`` with every field given, set as its
    attrs ``__init__`` sets them (it has no hooks), without matching six
    keyword arguments: this runs on every call and attempt."""
    request: PreparedRequest = object.__new__(PreparedRequest)
    request.method = method
    request.url = url
    request.headers = headers
    request.params = params
    request.body = body
    request.path = path
    return request


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an
    HTTP date); ``None`` when absent or unreadable; never negative."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(body) > limit else "")


def decode_response(status: int, headers: Mapping[str, str], body: bytes) -> Envelope:
    """Decode one answer into an :class:`Envelope`, or raise.

    * a JSON envelope with ``code == "Success"`` and a 2xx status -> envelope;
    * any other ``code`` (even with HTTP 200) -> the :class:`ApiError`
      subclass mapped from it (:func:`aioims.errors.error_class_for`);
    * HTTP 5xx / 429 without an envelope -> :class:`ServerHTTPError` (with
      ``retry_after``);
    * anything else that is not the envelope -> :class:`DecodeError`.

    Every error carries ``http_status`` and ``request_id`` (the envelope's
    ``requestId``, else the ``x-request-id`` header).
    """
    payload: Any = None
    parsed = False
    try:  # an empty or blank body is not JSON either
        payload = loads(body)
        parsed = True
    except (ValueError, UnicodeDecodeError):
        parsed = False
    if 200 <= status < 300 and payload.__class__ is dict and payload.get("code") == SUCCESS_CODE:
        # the usual answer, first
        raw_id = payload.get("requestId")
        raw_message = payload.get("message")
        return Envelope(
            payload.get("data"),
            str(raw_id) if raw_id not in (None, "") else _header(headers, "x-request-id"),
            SUCCESS_CODE,
            "" if raw_message is None else str(raw_message),
            status,
        )

    header_request_id = _header(headers, "x-request-id")
    retry_after = parse_retry_after(_header(headers, "retry-after"))
    server_side = status >= 500 or status == 429

    envelope = isinstance(payload, dict) and isinstance(payload.get("code"), str) and parsed
    if not envelope:
        if server_side:
            raise ServerHTTPError(
                f"HTTP {status} without an IMS envelope: {_snippet(body)!r}",
                retry_after=retry_after,
                request_id=header_request_id,
                http_status=status,
            )
        if 200 <= status < 300 and not body.strip() and status != 200:
            # 201/204 with no content: nothing to decode.
            return Envelope(data=None, request_id=header_request_id, http_status=status)
        what = "is not JSON" if not parsed else "is not the IMS envelope (no 'code')"
        raise DecodeError(
            f"HTTP {status}: response body {what}: {_snippet(body)!r}",
            request_id=header_request_id,
            http_status=status,
        )

    assert isinstance(payload, dict)
    code: str = payload["code"]
    raw_id = payload.get("requestId")
    request_id = str(raw_id) if raw_id not in (None, "") else header_request_id
    raw_message = payload.get("message")
    message = "" if raw_message is None else str(raw_message)

    if code == SUCCESS_CODE:  # (with a 2xx status: answered above)
        if server_side:
            raise ServerHTTPError(
                f"HTTP {status} with a 'Success' envelope",
                retry_after=retry_after,
                request_id=request_id,
                http_status=status,
            )
        raise DecodeError(
            f"HTTP {status} with a 'Success' envelope", request_id=request_id, http_status=status
        )

    if not code.startswith("IMG.") and server_side:
        raise ServerHTTPError(
            f"HTTP {status}: {code}: {message}",
            retry_after=retry_after,
            code=code,
            request_id=request_id,
            http_status=status,
        )
    cls = error_class_for(code)
    error = cls(message, code=code, request_id=request_id, http_status=status)
    if retry_after is not None:
        error.retry_after = retry_after  # type: ignore[attr-defined]
    raise error


def retry_after_of(error: BaseException) -> float | None:
    """The server-requested wait carried by an error, if any."""
    value = getattr(error, "retry_after", None)
    return float(value) if isinstance(value, (int, float)) else None


def is_transient(error: BaseException) -> bool:
    """True for failures worth another attempt of an idempotent call."""
    if isinstance(error, (ConnectionFailedError, RequestTimeoutError, ServerHTTPError)):
        return True
    if isinstance(error, ApiError):
        return error.code in TRANSIENT_CODES
    return False


def is_retryable(error: BaseException, mode: RetryMode, *, request_sent: bool = True) -> bool:
    """Whether a failed attempt of a call of ``mode`` may be sent again.

    ``request_sent`` is false only when the connection could not even be
    established (nothing reached the server).
    """
    if not isinstance(error, IMSError) or mode is RetryMode.NEVER:
        return False
    if mode is RetryMode.SAFE:
        return is_transient(error)
    # UNSENT_ONLY: a repeat must not risk doing the work twice.
    if isinstance(error, ConnectionFailedError) and not request_sent:
        return True
    return isinstance(error, ServerHTTPError) and error.http_status == 429
