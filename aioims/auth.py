"""Pluggable authentication.

The vendor's signature algorithm is specified in a document we do not have,
so authentication is a hook: any object with an ``async apply(request)``
method that amends a :class:`~aioims.PreparedRequest` (add headers or query
parameters; it sees the method, URL, headers and exact body bytes).  It is
called before *every* attempt, so a time-based signature is fresh on a retry.

Shipped implementations:

* :class:`HeaderAuth` — static headers (``HeaderAuth.bearer(token)`` for
  ``Authorization: Bearer <token>``); its ``repr`` masks the values;
* :class:`CallableAuth` — wraps a sync or async callable.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

from ._protocol import PreparedRequest

__all__ = ["Auth", "CallableAuth", "HeaderAuth", "PreparedRequest"]


@runtime_checkable
class Auth(Protocol):
    """What :class:`~aioims.IMSSession` calls to authenticate a request."""

    async def apply(self, request: PreparedRequest) -> None:
        """Amend ``request`` in place (headers, params)."""
        ...


class HeaderAuth:
    """Adds fixed headers to every request; ``repr`` never shows values."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        items = dict(headers)
        for key, value in items.items():
            if not isinstance(key, str) or not isinstance(value, str) or not key:
                raise TypeError("HeaderAuth headers must map non-empty str to str")
            if "\n" in value or "\r" in value:
                raise ValueError(f"header {key!r} contains a line break")
        self._headers = items

    @classmethod
    def bearer(cls, token: str) -> HeaderAuth:
        """``Authorization: Bearer <token>``."""
        return cls({"Authorization": f"Bearer {token}"})

    @property
    def header_names(self) -> list[str]:
        return list(self._headers)

    async def apply(self, request: PreparedRequest) -> None:
        request.headers.update(self._headers)

    def __repr__(self) -> str:
        masked = ", ".join(f"{k!r}: '***'" for k in self._headers)
        return f"HeaderAuth({{{masked}}})"

    __str__ = __repr__


AuthHook = Callable[[PreparedRequest], "Awaitable[None] | None"]


class CallableAuth:
    """Calls ``fn(request)`` before each attempt; ``fn`` may be sync or async."""

    __slots__ = ("_fn",)

    def __init__(self, fn: AuthHook) -> None:
        if not callable(fn):
            raise TypeError("CallableAuth needs a callable")
        self._fn = fn

    async def apply(self, request: PreparedRequest) -> None:
        result = self._fn(request)
        if inspect.isawaitable(result):
            await result

    def __repr__(self) -> str:
        name = getattr(self._fn, "__qualname__", type(self._fn).__name__)
        return f"CallableAuth({name})"
