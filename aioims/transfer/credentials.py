"""The temporary credentials of a transfer: when to refresh them.

``upload-prepare`` hands out STS-style credentials (key, secret, session
token) that lapse.  :class:`~aioims.transfer.s3.S3Clients` refreshes them

* **proactively**, before ``UploadTarget.expires_at`` (when known), like
  aiobotocore's ``AioRefreshableCredentials``: in the *advisory* window one
  request refreshes while the others go on with the current credentials (a
  failed advisory refresh is logged, not fatal); in the *mandatory* window
  every request waits for the one refresh in flight (a failure is fatal);
* **reactively**, when S3 refuses a request signed with them (see
  :meth:`S3Clients.classify <aioims.transfer.s3.S3Clients.classify>`).

The windows come from ``TransferConfig.refresh_margin`` (advisory: that many
seconds before expiry, mandatory: half of it), shrunk for short-lived
credentials to half / a quarter of their lifetime, so that credentials
valid for 5 s are not "expiring" from the start.

This module holds the bookkeeping (no I/O); the refresh itself is done by
``S3Clients``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import anyio
import attrs

from ..models.upload import UploadTarget
from .errors import CredentialsExpiredError

Now = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def seconds_left(expires_at: datetime, now: datetime | None = None) -> float:
    """Seconds until ``expires_at`` (a naive datetime is taken as UTC)."""
    now = now if now is not None else utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=timezone.utc)
    return (expires_at - now).total_seconds()


class Window(enum.Enum):
    """Where credentials stand relative to their expiry."""

    FRESH = "fresh"
    ADVISORY = "advisory"  # one request refreshes, the others proceed
    MANDATORY = "mandatory"  # every request waits for the refresh


@attrs.frozen
class RefreshWindows:
    """Seconds before expiry at which the advisory / mandatory windows open."""

    advisory: float
    mandatory: float


def refresh_windows(lifetime: float | None, margin: float) -> RefreshWindows:
    """The windows for credentials that had ``lifetime`` seconds to live when
    they arrived (None or ≤ 0: unknown or already expired)."""
    if lifetime is None or lifetime <= 0:
        return RefreshWindows(margin, margin / 2)
    return RefreshWindows(min(margin, lifetime / 2), min(margin / 2, lifetime / 4))


def window_of(
    expires_at: datetime | None, lifetime: float | None, margin: float, now: datetime
) -> Window:
    if expires_at is None:
        return Window.FRESH
    left = seconds_left(expires_at, now)
    windows = refresh_windows(lifetime, margin)
    if left <= windows.mandatory:
        return Window.MANDATORY
    if left <= windows.advisory:
        return Window.ADVISORY
    return Window.FRESH


@attrs.define(eq=False)
class Generation:
    """One set of credentials and the S3 client signing with them."""

    number: int
    target: UploadTarget
    client: Any
    #: seconds the credentials had to live when they arrived (None: unknown)
    lifetime: float | None
    #: produced by a reactive refresh: S3 had just refused the previous ones
    reactive: bool = False
    #: a request signed with these credentials succeeded
    proven: bool = False
    advisory_failed: bool = False
    mandatory_tried: bool = False

    @property
    def temporary(self) -> bool:
        """STS-style credentials (with a session token): they lapse."""
        return bool(self.target.token)

    def expired(self, now: datetime) -> bool:
        expires_at = self.target.expires_at
        return expires_at is not None and seconds_left(expires_at, now) <= 0


class RefreshKind(enum.Enum):
    ADVISORY = "advisory"
    MANDATORY = "mandatory"
    REACTIVE = "reactive"


@attrs.define(eq=False)
class InFlight:
    """The one refresh in flight; others wait on ``done``."""

    kind: RefreshKind
    done: anyio.Event = attrs.field(factory=anyio.Event)
    #: set when the refresh failed (None: it succeeded, or its task was cancelled)
    error: CredentialsExpiredError | None = None

    def failure_for_waiter(self) -> CredentialsExpiredError | None:
        """A copy of the failure, for a waiting request to raise (a failed
        advisory refresh is nobody's failure: the waiter tries its own)."""
        err = self.error
        if err is None or self.kind is RefreshKind.ADVISORY:
            return None
        copy = CredentialsExpiredError(
            str(err), operation=err.operation, code=err.code, refreshes=err.refreshes
        )
        copy.__cause__ = err.__cause__
        return copy


class ClientWrapper:
    """An S3 client whose request methods (see :func:`is_request_method`)
    go through :meth:`around`; every other attribute is the wrapped client's."""

    __slots__ = ("_aioims_client",)

    def __init__(self, client: Any) -> None:
        self._aioims_client = client

    @property
    def wrapped(self) -> Any:
        return self._aioims_client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._aioims_client, name)
        if not is_request_method(self._aioims_client, name, attr):
            return attr
        return self.around(attr)

    def around(self, method: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError


class TrackedClient(ClientWrapper):
    """An S3 client that notes, on its :class:`Generation`, that a request
    signed with its credentials succeeded (so that a later refusal of these
    credentials is read as "they lapsed", not "fresh ones were refused")."""

    __slots__ = ("_aioims_generation",)

    def __init__(self, client: Any, generation: Generation) -> None:
        super().__init__(client)
        self._aioims_generation = generation

    def around(self, method: Callable[..., Any]) -> Callable[..., Any]:
        generation = self._aioims_generation

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            generation.proven = True
            return result

        return call


def is_request_method(client: Any, name: str, attr: Any) -> bool:
    """Is ``client.<name>`` (``attr``) a request method (``upload_part``...)?

    botocore clients list them in ``client.meta.method_to_api_mapping`` (their
    methods are not coroutine functions for ``inspect``: aiobotocore wraps
    them); other clients (test fakes) have coroutine functions."""
    if name.startswith("_") or not callable(attr):
        return False
    mapping = getattr(getattr(client, "meta", None), "method_to_api_mapping", None)
    if isinstance(mapping, dict):
        return name in mapping
    import inspect

    return inspect.iscoroutinefunction(attr)
