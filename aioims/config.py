"""Settings of an :class:`~aioims.IMSSession`: endpoint, region, timeouts,
TLS and the :class:`RetryPolicy`, plus parsing of the ``IMS_*`` environment
variables used by :meth:`IMSSession.from_env`.

Pure: nothing here does I/O (reading a CA bundle happens in the session's
``__aenter__``, off the event loop).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import anyio
import attrs

from .errors import ValidationError

#: Path prefix of every IMS v1 call, appended to the endpoint.
API_PREFIX = "/api/image/v1"

DEFAULT_TIMEOUT = 60.0


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{name} must be a number, got {value!r}", field=name)
    if value < 0 or (value == 0 and not allow_zero) or value != value:  # NaN check
        raise ValidationError(f"{name} must be > 0, got {value!r}", field=name)


@runtime_checkable
class Clock(Protocol):
    """Where the retry loop reads the time and waits (``RetryPolicy(clock=...)``).

    ``monotonic()`` returns seconds (any origin); ``sleep(seconds)`` waits that
    long.  The default is :data:`SYSTEM_CLOCK` (``time.monotonic`` and
    ``anyio.sleep``); a test passes a fake clock whose ``sleep`` advances its
    own time at once, so backoff, ``Retry-After`` and ``deadline`` are checked
    without waiting or depending on the machine's load.
    """

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic()`` and ``anyio.sleep()``."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


#: The clock of every RetryPolicy that does not name one.
SYSTEM_CLOCK: Clock = SystemClock()


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how often a failed call is tried again.

    Only *transient* failures are retried (``IMG.DBGet.Fail``,
    ``IMG.DBUpdate.Fail``, ``IMG.Internal.Error``, HTTP 5xx and 429,
    connection errors and timeouts), and only on calls that are safe to
    repeat (see ``docs/getting-started.md``).

    The wait before retry *n* (1-based) is drawn with *full jitter* from
    ``[0, min(max_backoff, initial_backoff * multiplier ** (n - 1))]``
    (or is exactly that cap when ``jitter`` is false).  A ``Retry-After``
    header on a 429/503 answer replaces it (capped at ``max_retry_after``)
    when ``respect_retry_after`` is true.  ``deadline`` bounds the whole call,
    attempts and waits included: no wait is started that would end after it,
    and each attempt's timeout is clipped to what is left.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: bool = True
    deadline: float | None = None
    respect_retry_after: bool = True
    max_retry_after: float = 60.0
    #: Testing hook: the :class:`Clock` the retry loop reads and sleeps on
    #: (``None``: :data:`SYSTEM_CLOCK`).  Not part of equality or repr.
    clock: Clock | None = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ValidationError(
                f"max_attempts must be an int >= 1, got {self.max_attempts!r}",
                field="max_attempts",
            )
        _positive("initial_backoff", self.initial_backoff, allow_zero=True)
        _positive("max_backoff", self.max_backoff, allow_zero=True)
        _positive("max_retry_after", self.max_retry_after, allow_zero=True)
        _positive("deadline", self.deadline)
        _positive("multiplier", self.multiplier)
        if self.multiplier < 1:
            raise ValidationError("multiplier must be >= 1", field="multiplier")
        if self.clock is not None and not isinstance(self.clock, Clock):
            raise ValidationError(
                "clock must have monotonic() and async sleep(seconds)", field="clock"
            )

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries (one attempt)."""
        return cls(max_attempts=1)

    def backoff_cap(self, retry_number: int) -> float:
        """The upper bound of the wait before retry ``retry_number`` (1-based)."""
        if retry_number < 1:
            return 0.0
        exponent = min(retry_number - 1, 64)  # avoid float overflow on silly values
        return float(min(self.max_backoff, self.initial_backoff * self.multiplier**exponent))

    def compute_delay(
        self,
        retry_number: int,
        retry_after: float | None = None,
        *,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        if retry_after is not None and self.respect_retry_after:
            return max(0.0, min(float(retry_after), self.max_retry_after))
        cap = self.backoff_cap(retry_number)
        if not self.jitter:
            return cap
        return (rng or random).uniform(0.0, cap)


def normalize_endpoint(endpoint: str) -> str:
    """The API root URL: ``https://host`` -> ``https://host/api/image/v1``.

    A missing scheme means ``https``; an endpoint already ending in
    ``/api/image/v1`` is kept as is.
    """
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ValidationError("endpoint must be a non-empty URL", field="endpoint")
    text = endpoint.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"endpoint is not an http(s) URL: {endpoint!r}", field="endpoint")
    if parts.query or parts.fragment:
        raise ValidationError("endpoint may not carry a query or fragment", field="endpoint")
    text = text.rstrip("/")
    if not text.endswith(API_PREFIX):
        text += API_PREFIX
    return text


@attrs.frozen(kw_only=True)
class Settings:
    """Validated, immutable session settings."""

    endpoint: str
    region: str
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    verify_ssl: bool = True
    ca_bundle: str | None = None
    user_agent: str | None = None

    @property
    def base_url(self) -> str:
        return normalize_endpoint(self.endpoint)

    def __attrs_post_init__(self) -> None:
        normalize_endpoint(self.endpoint)
        if not isinstance(self.region, str) or not self.region.strip():
            raise ValidationError("region must be a non-empty string", field="region")
        _positive("timeout", self.timeout)
        if not isinstance(self.retry, RetryPolicy):
            raise ValidationError("retry must be a RetryPolicy", field="retry")
        if self.ca_bundle is not None and not self.verify_ssl:
            raise ValidationError(
                "ca_bundle makes no sense with verify_ssl=False", field="ca_bundle"
            )


# --- environment -------------------------------------------------------------
# The variables themselves are read by :mod:`aioims.settings` (the one
# settings module: flags > environment > profile); these are kept for callers
# of the original API.


def __getattr__(name: str) -> Any:
    if name == "ENV_VARIABLES":
        return env_variables()
    raise AttributeError(f"module 'aioims.config' has no attribute {name!r}")


def env_variables() -> dict[str, str]:
    """``{variable: description}`` of every ``IMS_*`` setting (deprecated
    names included, marked so)."""
    from .settings import DEPRECATED_ENV_VARS, DESCRIPTIONS, ENV_VARS, IMS_CONFIG_FILE, IMS_PROFILE

    out = {ENV_VARS[key]: text for key, text in DESCRIPTIONS.items()}
    out[IMS_PROFILE] = "profile of the config file to use (default 'default')"
    out[IMS_CONFIG_FILE] = "config file (default $XDG_CONFIG_HOME/aioims/config.toml)"
    for old, (new, note) in DEPRECATED_ENV_VARS.items():
        out[old] = f"deprecated, use {new} ({note})"
    return out


def settings_from_env(environ: Mapping[str, str] | None = None) -> tuple[Settings, str | None]:
    """Read the ``IMS_*`` variables (and the profile file, see
    :mod:`aioims.settings`); returns the session settings and the token.

    Empty variables count as unset.  Bad values raise
    :class:`~aioims.ValidationError` naming the variable.
    """
    from .settings import resolve

    resolved = resolve({}, os.environ if environ is None else environ)
    kwargs = resolved.session_kwargs()
    kwargs.pop("defaults")
    return Settings(**kwargs), resolved.token
