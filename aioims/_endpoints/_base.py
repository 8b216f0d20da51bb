"""What every endpoint mixin relies on: ``_call``/``_stream`` (provided by
:class:`aioims.IMSSession`) and helpers turning envelopes into models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from .._protocol import Envelope, RetryMode
from .._transport import StreamResponse
from ..config import RetryPolicy
from ..errors import DecodeError
from ..models import Page, from_wire, page_from_wire

T = TypeVar("T")


class EndpointBase:
    """Abstract plumbing; implemented by :class:`aioims.IMSSession`."""

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        request_info: bool = False,
        mode: RetryMode = RetryMode.SAFE,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Envelope:
        raise NotImplementedError

    def _stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        request_info: bool = False,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AbstractAsyncContextManager[StreamResponse]:
        raise NotImplementedError


def _bad(envelope: Envelope, message: str) -> DecodeError:
    return DecodeError(message, request_id=envelope.request_id, http_status=envelope.http_status)


def parse_model(envelope: Envelope, cls: type[T]) -> T:
    """``data`` as a model; a missing or malformed object is a DecodeError."""
    data = envelope.data
    if data.__class__ is not dict and not isinstance(data, Mapping):
        raise _bad(envelope, f"expected a {cls.__name__} object in 'data', got {data!r:.100}")
    try:
        return from_wire(data, cls)
    except Exception as exc:
        raise _bad(envelope, f"cannot read {cls.__name__} from 'data': {exc}") from exc


def parse_list(envelope: Envelope, cls: type[T]) -> list[T]:
    data = envelope.data
    if data is None:
        return []
    if not isinstance(data, list):
        raise _bad(envelope, f"expected a list in 'data', got {data!r:.100}")
    try:
        return [from_wire(item, cls) for item in data]
    except Exception as exc:
        raise _bad(envelope, f"cannot read {cls.__name__} items: {exc}") from exc


def parse_page(
    envelope: Envelope,
    cls: type[T],
    fetch: Callable[[int], Awaitable[Page[T]]],
    *,
    requested: int,
) -> Page[T]:
    """``data`` as a :class:`Page` whose ``async for`` walks on with ``fetch``.

    ``current`` is the page that was asked for (so a server echoing a wrong
    page number cannot make iteration loop forever)."""
    if envelope.data.__class__ is not dict and not isinstance(envelope.data, Mapping):
        raise _bad(envelope, f"expected a page object in 'data', got {envelope.data!r:.100}")
    try:
        return page_from_wire(envelope.data, cls, current=requested, fetch=fetch)
    except Exception as exc:
        raise _bad(envelope, f"cannot read a page of {cls.__name__}: {exc}") from exc
