"""Settings of an :class:`~aioims.IMSSession`: endpoint, region, timeouts,
TLS and the :class:`RetryPolicy`, plus parsing of the ``IMS_*`` environment
variables used by :meth:`IMSSession.from_env`.

Pure: nothing here does I/O (reading a CA bundle happens in the session's
``__aenter__``, off the event loop).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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

#: The documented variables read by :func:`settings_from_env`.
ENV_VARIABLES: dict[str, str] = {
    "IMS_ENDPOINT": "service root URL, e.g. https://ims.example.com (required)",
    "IMS_REGION": "region id sent as x-regionid, e.g. region0 (required)",
    "IMS_TOKEN": "bearer token; sent as 'Authorization: Bearer <token>'",
    "IMS_CA_BUNDLE": "path to a PEM CA bundle used to verify the server",
    "IMS_VERIFY_SSL": "'false'/'0'/'no' turns certificate checks off (default on)",
    "IMS_TIMEOUT": "per-request timeout in seconds (default 60)",
    "IMS_MAX_ATTEMPTS": "attempts per call including the first (default 3)",
    "IMS_RETRY_DEADLINE": "total seconds a call may take, retries included",
    "IMS_BACKOFF_INITIAL": "first backoff cap in seconds (default 0.2)",
    "IMS_BACKOFF_MAX": "largest backoff in seconds (default 10)",
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _env_bool(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError(f"{name} must be true/false, got {raw!r}", field=name)


def _env_float(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValidationError(f"{name} must be a number, got {raw!r}", field=name) from None
    _positive(name, value, allow_zero=name.startswith("IMS_BACKOFF"))
    return value


def _env_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValidationError(f"{name} must be an integer, got {raw!r}", field=name) from None


def settings_from_env(environ: Mapping[str, str] | None = None) -> tuple[Settings, str | None]:
    """Read the ``IMS_*`` variables; returns the settings and the token (if any).

    Empty variables count as unset.  Bad values raise
    :class:`~aioims.ValidationError` naming the variable.
    """
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if v != ""}
    missing = [name for name in ("IMS_ENDPOINT", "IMS_REGION") if name not in env]
    if missing:
        raise ValidationError(
            f"missing environment variable(s): {', '.join(missing)}", field=missing[0]
        )
    retry_kw: dict[str, Any] = {}
    if "IMS_MAX_ATTEMPTS" in env:
        retry_kw["max_attempts"] = _env_int("IMS_MAX_ATTEMPTS", env["IMS_MAX_ATTEMPTS"])
    if "IMS_RETRY_DEADLINE" in env:
        retry_kw["deadline"] = _env_float("IMS_RETRY_DEADLINE", env["IMS_RETRY_DEADLINE"])
    if "IMS_BACKOFF_INITIAL" in env:
        retry_kw["initial_backoff"] = _env_float("IMS_BACKOFF_INITIAL", env["IMS_BACKOFF_INITIAL"])
    if "IMS_BACKOFF_MAX" in env:
        retry_kw["max_backoff"] = _env_float("IMS_BACKOFF_MAX", env["IMS_BACKOFF_MAX"])
    kwargs: dict[str, Any] = {
        "endpoint": env["IMS_ENDPOINT"],
        "region": env["IMS_REGION"],
        "retry": RetryPolicy(**retry_kw),
    }
    if "IMS_TIMEOUT" in env:
        kwargs["timeout"] = _env_float("IMS_TIMEOUT", env["IMS_TIMEOUT"])
    if "IMS_VERIFY_SSL" in env:
        kwargs["verify_ssl"] = _env_bool("IMS_VERIFY_SSL", env["IMS_VERIFY_SSL"])
    if "IMS_CA_BUNDLE" in env:
        kwargs["ca_bundle"] = env["IMS_CA_BUNDLE"]
    return Settings(**kwargs), env.get("IMS_TOKEN")
