"""The aiobotocore S3 client of a transfer, built from an :class:`UploadTarget`.

Only aiobotocore's public API is used: ``get_session().create_client(...)``
as an async context manager, configured with an ``AioConfig``:

* ``endpoint_url`` = ``target.domain`` (``https://`` is assumed when it has
  no scheme), path-style addressing (endpoints are often bare IPs);
* the temporary key/secret/token of the target (an empty token is no token);
* ``verify``: ``False`` when ``verify_ssl=False``, else ``ca_bundle`` (a PEM
  file) when given, else ``True`` (the default CA store);
* ``request_checksum_calculation``/``response_checksum_validation`` =
  ``"when_required"`` (third-party S3 servers reject the newer default
  CRC checksums); integrity comes from Content-MD5 instead;
* botocore's own retries off (``total_max_attempts=1``): the engine's
  per-part retry policy governs;
* a connection pool of ``max_concurrency + 2`` (parts plus a control call);
* one aiobotocore session per event loop, built with S3's JSON models
  loaded in a worker thread, so creating a client does not parse them on
  the event loop.

:class:`S3Clients` swaps in a new client when the credentials are refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import aiohttp
import anyio
import attrs
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import ValidationError
from ..models.upload import UploadTarget
from .config import TransferConfig
from .errors import CredentialsExpiredError

logger = logging.getLogger("aioims.transfer")

RefreshCallable = Callable[[], Awaitable[UploadTarget]]

#: S3 error codes meaning "your temporary credentials are no good (any more)".
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidAccessKeyId",
        "ExpiredTokenException",
    }
)

#: S3 error codes worth a retry whatever their HTTP status.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequests",
        "BandwidthLimitExceeded",
    }
)


class FailureKind(enum.Enum):
    TRANSIENT = "transient"
    CREDENTIALS = "credentials"
    PERMANENT = "permanent"  # retried once
    FATAL = "fatal"  # never retried (a certificate problem does not heal by itself)


@attrs.frozen
class S3Failure:
    """A classified failure of one S3 request."""

    kind: FailureKind
    code: str | None
    message: str
    http_status: int | None = None
    request_id: str | None = None


def classify(exc: BaseException) -> S3Failure | None:
    """Classify an exception raised by an S3 call; None if it is not an S3
    or network failure (a bug, or a cancellation: let it propagate)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {}) or {}
        meta = exc.response.get("ResponseMetadata", {}) or {}
        code = str(error.get("Code") or "") or None
        status = meta.get("HTTPStatusCode")
        request_id = meta.get("RequestId") or None
        message = f"{code or 'HTTP ' + str(status)}: {error.get('Message') or ''}".rstrip(": ")
        if code in CREDENTIAL_ERROR_CODES:
            kind = FailureKind.CREDENTIALS
        elif code in TRANSIENT_ERROR_CODES or (
            isinstance(status, int) and (status >= 500 or status == 429)
        ):
            kind = FailureKind.TRANSIENT
        else:
            kind = FailureKind.PERMANENT
        http_status = status if isinstance(status, int) else None
        return S3Failure(kind, code, message, http_status, request_id)
    if isinstance(exc, SSLError):
        return S3Failure(FailureKind.FATAL, "SSLError", str(exc))
    if isinstance(
        exc,
        (
            BotoConnectionError,
            HTTPClientError,
            IncompleteReadError,
            aiohttp.ClientError,
            OSError,
            TimeoutError,
        ),
    ):
        return S3Failure(FailureKind.TRANSIENT, type(exc).__name__, f"{type(exc).__name__}: {exc}")
    return None


def endpoint_url(domain: str) -> str:
    """The endpoint URL of ``UploadTarget.domain`` (https assumed without a scheme)."""
    value = (domain or "").strip()
    if not value:
        raise ValidationError("upload target has no S3 endpoint (domain)", field="domain")
    if "://" not in value:
        value = "https://" + value
    return value.rstrip("/")


def client_config(config: TransferConfig) -> AioConfig:
    from .. import __version__

    s3: dict[str, Any] = {"addressing_style": "path"}
    if config.sign_payload is not None:
        s3["payload_signing_enabled"] = config.sign_payload
    options: dict[str, Any] = {
        "region_name": config.region,
        "signature_version": "s3v4",
        "s3": s3,
        "retries": {"total_max_attempts": config.botocore_max_attempts, "mode": "standard"},
        "max_pool_connections": config.max_concurrency + 2,
        "connect_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "user_agent_extra": f"aioims/{__version__}",
    }
    # botocore < 1.36 has neither the options nor the default CRC checksums
    # they switch off.
    if "request_checksum_calculation" in BotoConfig.OPTION_DEFAULTS:
        options["request_checksum_calculation"] = config.request_checksum_calculation
        options["response_checksum_validation"] = config.response_checksum_validation
    return AioConfig(**options)


def verify_option(config: TransferConfig) -> bool | str:
    if not config.verify_ssl:
        return False
    return config.ca_bundle or True


def client_kwargs(target: UploadTarget, config: TransferConfig) -> dict[str, Any]:
    """Arguments of ``create_client("s3", **kwargs)`` (holds secrets: never log it).

    A plain ``http://`` endpoint gets ``verify=False``: there is no TLS to
    verify, and aiobotocore would otherwise load the CA bundle for every
    client (tens of ms holding the GIL, so stalling the event loop)."""
    url = endpoint_url(target.domain)
    return {
        "endpoint_url": url,
        "region_name": config.region,
        "aws_access_key_id": target.access_key,
        "aws_secret_access_key": target.secret_key,
        "aws_session_token": target.token or None,
        "verify": verify_option(config) if url.lower().startswith("https://") else False,
        "config": client_config(config),
    }


@attrs.define
class _LoopShared:
    """What the transfers of one event loop share: the aiobotocore session,
    and whether a client was already created from it (``warm``)."""

    lock: anyio.Lock = attrs.field(factory=anyio.Lock)
    session: Any = None
    warm: bool = False


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopShared] = (
    weakref.WeakKeyDictionary()
)


def _loop_shared() -> _LoopShared:
    loop = asyncio.get_running_loop()
    shared = _shared.get(loop)
    if shared is None:
        shared = _shared[loop] = _LoopShared()
    return shared


def _new_session() -> Any:
    """An aiobotocore session with S3's JSON models already loaded (blocking:
    building a session and parsing the models takes tens of ms of CPU)."""
    session = get_session()
    loader = session.get_component("data_loader")
    for name in ("_retry", "endpoints", "partitions", "sdk-default-configuration"):
        with contextlib.suppress(Exception):
            loader.load_data(name)
    for type_name in ("service-2", "endpoint-rule-set-1", "paginators-1"):
        with contextlib.suppress(Exception):
            loader.load_service_model("s3", type_name)
    return session


async def shared_session() -> Any:
    """The aiobotocore session of the running event loop.

    Created once per loop in a worker thread, with the S3 models loaded
    (cached by botocore's loader), and shared by every transfer on that loop.
    """
    shared = _loop_shared()
    if shared.session is None:
        async with shared.lock:  # concurrent first transfers build it once
            if shared.session is None:
                shared.session = await anyio.to_thread.run_sync(_new_session)
    return shared.session


def _seconds_left(expires_at: datetime) -> float:
    if expires_at.tzinfo is None:  # naive: taken as UTC
        now = datetime.now(timezone.utc).replace(tzinfo=None)
    else:
        now = datetime.now(timezone.utc)
    return (expires_at - now).total_seconds()


class S3Clients:
    """The current S3 client of a transfer and its credential refreshes.

    A refresh calls ``refresh()`` for a new :class:`UploadTarget`, opens a new
    client with its credentials (bucket, key and upload id stay the same) and
    makes it current; requests in flight finish on the old client, which is
    closed with the others at the end.  Only one refresh runs at a time: a
    request that failed on an older generation just retries on the new one.
    """

    def __init__(
        self,
        target: UploadTarget,
        config: TransferConfig,
        refresh: RefreshCallable | None,
        on_refreshed: Callable[[int], None],
    ) -> None:
        self.target = target
        self.config = config
        self.generation = 0
        self.refreshes = 0
        self._refresh = refresh
        self._on_refreshed = on_refreshed
        self._session: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = anyio.Lock()
        self._client: Any = None
        self._proactive_generation = -1

    async def __aenter__(self) -> S3Clients:
        self._session = await shared_session()
        shared = _loop_shared()
        if shared.warm:
            self._client = await self._open(self.target)
            return self
        # The first client of a session fills botocore's caches (endpoint
        # rules, models): ~100 ms of CPU.  Transfers starting together would
        # each pay it (16 at once: seconds); one does, the others then take
        # a few ms each.
        async with shared.lock:
            self._client = await self._open(self.target)
            shared.warm = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()

    @property
    def client(self) -> Any:
        return self._client

    async def _open(self, target: UploadTarget) -> Any:
        return await self._stack.enter_async_context(
            self._session.create_client("s3", **client_kwargs(target, self.config))
        )

    def expiring(self) -> bool:
        expires_at = self.target.expires_at
        return expires_at is not None and _seconds_left(expires_at) <= self.config.refresh_margin

    async def ensure_fresh(self) -> None:
        """Refresh ahead of ``target.expires_at`` (once per generation)."""
        if (
            self._refresh is None
            or self._proactive_generation == self.generation
            or self.refreshes >= self.config.max_refreshes
            or not self.expiring()
        ):
            return
        generation = self.generation
        async with self._lock:
            if generation != self.generation or self._proactive_generation == generation:
                return
            self._proactive_generation = generation
            logger.debug("credentials expire within %.0f s: refreshing", self.config.refresh_margin)
            await self._swap()

    async def credentials_rejected(self, generation: int, code: str | None) -> None:
        """S3 rejected the credentials of ``generation``: refresh them, or
        raise :class:`CredentialsExpiredError`."""
        async with self._lock:
            if generation != self.generation:
                return  # another request already refreshed
            if self._refresh is None:
                raise CredentialsExpiredError(
                    f"S3 rejected the upload credentials ({code}) and no refresh callable "
                    "was given",
                    operation="refresh",
                    code=code,
                    refreshes=self.refreshes,
                )
            if self.refreshes >= self.config.max_refreshes:
                raise CredentialsExpiredError(
                    f"S3 rejected the upload credentials ({code}) after {self.refreshes} refreshes",
                    operation="refresh",
                    code=code,
                    refreshes=self.refreshes,
                )
            logger.debug("S3 rejected the credentials (%s): refreshing", code)
            await self._swap()

    async def _swap(self) -> None:
        assert self._refresh is not None
        self.refreshes += 1
        try:
            target = await self._refresh()
            if not isinstance(target, UploadTarget):
                raise TypeError(f"refresh() returned {type(target).__name__}, not UploadTarget")
        except Exception as exc:
            raise CredentialsExpiredError(
                f"refreshing the upload credentials failed: {type(exc).__name__}: {exc}",
                operation="refresh",
                code="RefreshFailed",
                refreshes=self.refreshes,
            ) from exc
        if (target.bucket, target.file) != (self.target.bucket, self.target.file):
            raise CredentialsExpiredError(
                "refresh() returned a target for another object "
                f"({target.bucket}/{target.file}, not {self.target.bucket}/{self.target.file})",
                operation="refresh",
                code="RefreshMismatch",
                refreshes=self.refreshes,
            )
        client = await self._open(target)
        self.target, self._client = target, client
        self.generation += 1
        logger.info("upload credentials refreshed (%d so far)", self.refreshes)
        self._on_refreshed(self.refreshes)
