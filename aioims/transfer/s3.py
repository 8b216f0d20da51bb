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

:class:`S3Clients` swaps in a new client when the credentials are refreshed
(proactively before ``expires_at``, reactively when S3 refuses them; see
:mod:`aioims.transfer.credentials`).  ``TransferConfig.s3_client_factory``
replaces ``create_client`` (a testing hook: a fake client, or a wrapper).

All knowledge of how S3 servers differ in their answers lives here
(``docs/s3-compatibility.md``):

* :func:`classify` — transient / credentials / permanent / fatal, with
  ``maybe_credentials`` for ambiguous refusals (radosgw answers a lapsed
  session token with ``403 AccessDenied``, a corrupted one with ``400
  InvalidArgument``, a HEAD with a bodiless ``403``);
* :meth:`S3Clients.classify` — the same, knowing the credentials that signed
  the request: an ambiguous refusal of temporary credentials is a credential
  failure (refresh once, retry), unless fresh credentials are refused the
  same way (a real permission error);
* :func:`is_upload_gone` — ``NoSuchUpload``; radosgw's ``NoSuchKey`` for an
  upload's operations; radosgw's ``500 InternalError`` when completing an
  aborted upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import platform
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
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
from .credentials import (
    ClientWrapper,
    Generation,
    InFlight,
    Now,
    RefreshKind,
    TrackedClient,
    Window,
    seconds_left,
    utcnow,
    window_of,
)
from .errors import CredentialsExpiredError
from .offload import run_in_transfer_loop

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
    #: An answer that may be a refusal of temporary credentials although its
    #: code does not say so (radosgw: ``403 AccessDenied`` for an expired
    #: session token, ``400 InvalidArgument`` for a corrupted one; a HEAD's
    #: bodiless ``403``).  :meth:`S3Clients.classify` decides.
    maybe_credentials: bool = False


#: Answers that mean "refused" without saying why (any S3 server may send
#: them for lapsed temporary credentials: radosgw does).
AMBIGUOUS_DENIAL_CODES = frozenset({"AccessDenied", "Forbidden"})

#: Operations whose ``NoSuchKey`` means "no such multipart upload" (radosgw
#: answers ListParts of a gone upload with ``404 NoSuchKey``).
_UPLOAD_OPERATIONS = frozenset(
    {
        "ListParts",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    }
)

_TOKEN_WORDS = ("token", "security", "credential", "session", "authorization", "signature")


def _maybe_credentials(code: str | None, status: object, error: dict[str, Any]) -> bool:
    if code in AMBIGUOUS_DENIAL_CODES:
        return True
    if code is not None and code == str(status) and status in (400, 403):
        return True  # a HEAD's bodiless 403 / 400: botocore makes the status the code
    if code == "InvalidArgument":
        # radosgw: a corrupted session token is a bare 400 InvalidArgument; AWS
        # names the argument.  Anything that names another argument is not ours.
        name = str(error.get("ArgumentName") or "").lower()
        text = str(error.get("Message") or "").lower()
        if name:
            return any(word in name for word in _TOKEN_WORDS)
        if text:
            return any(word in text for word in _TOKEN_WORDS)
        return True
    return False


def classify(exc: BaseException) -> S3Failure | None:
    """Classify an exception raised by an S3 call; None if it is not an S3
    or network failure (a bug, or a cancellation: let it propagate).

    This knows nothing of the credentials that signed the request:
    ``AccessDenied`` is PERMANENT here (with ``maybe_credentials``);
    :meth:`S3Clients.classify` turns it into CREDENTIALS when the request
    used temporary credentials that were not just refreshed."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {}) or {}
        meta = exc.response.get("ResponseMetadata", {}) or {}
        code = str(error.get("Code") or "") or None
        status = meta.get("HTTPStatusCode")
        request_id = meta.get("RequestId") or None
        message = f"{code or 'HTTP ' + str(status)}: {error.get('Message') or ''}".rstrip(": ")
        maybe = False
        if code in CREDENTIAL_ERROR_CODES:
            kind = FailureKind.CREDENTIALS
        elif code in TRANSIENT_ERROR_CODES or (
            isinstance(status, int) and (status >= 500 or status == 429)
        ):
            kind = FailureKind.TRANSIENT
        else:
            kind = FailureKind.PERMANENT
            maybe = _maybe_credentials(code, status, error)
        http_status = status if isinstance(status, int) else None
        return S3Failure(kind, code, message, http_status, request_id, maybe)
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


def is_upload_gone(code: str | None, operation: str, *, after_abort: bool = False) -> bool:
    """Does an error ``code`` on ``operation`` (``"ListParts"``...) mean that
    the multipart upload no longer exists (completed or aborted)?

    * ``NoSuchUpload`` on any operation (AWS, moto, MinIO; radosgw on
      UploadPart and AbortMultipartUpload);
    * ``NoSuchKey`` on an operation of the upload (radosgw answers ListParts
      of a gone upload with ``404 NoSuchKey``);
    * ``InternalError`` on CompleteMultipartUpload when the caller knows the
      upload was aborted (``after_abort``): radosgw answers completing an
      aborted upload with ``500 InternalError`` ("This multipart completion
      is already in progress"), which otherwise reads as transient.
    """
    if code == "NoSuchUpload":
        return True
    if code == "NoSuchKey" and operation in _UPLOAD_OPERATIONS:
        return True
    return after_abort and operation == "CompleteMultipartUpload" and code == "InternalError"


def endpoint_url(domain: str) -> str:
    """The endpoint URL of ``UploadTarget.domain`` (https assumed without a scheme)."""
    value = (domain or "").strip()
    if not value:
        raise ValidationError("upload target has no S3 endpoint (domain)", field="domain")
    if "://" not in value:
        value = "https://" + value
    return value.rstrip("/")


@functools.cache
def user_agent() -> str:
    """The S3 clients' User-Agent, built once per process.

    Given to botocore as ``Config(user_agent=...)``: otherwise botocore
    request (2.3–2.5 → 1.7 ms of client CPU per ``UploadPart`` on the
    reference VM, see docs/performance.md).
    It still names the SDK, the stack beneath it and the platform."""
    import aiobotocore
    import botocore

    from .. import __version__

    return (
        f"aioims/{__version__} aiobotocore/{aiobotocore.__version__} "
        f"botocore/{botocore.__version__} Python/{platform.python_version()} "
        f"{platform.system()}/{platform.release()}"
    )


def client_config(config: TransferConfig) -> AioConfig:
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
        "user_agent": user_agent(),
    }
    # botocore < 1.36 has neither the options nor the default CRC checksums
    # they switch off.
    if "request_checksum_calculation" in BotoConfig.OPTION_DEFAULTS:
        options["request_checksum_calculation"] = config.request_checksum_calculation
        options["response_checksum_validation"] = config.response_checksum_validation
    if config.sender == "thread":  # large PUT bodies sent by worker threads
        from .sender import ThreadedSession

        options["http_session_cls"] = ThreadedSession
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


async def open_client(stack: contextlib.AsyncExitStack, kwargs: dict[str, Any]) -> Any:
    """An aiobotocore S3 client from the running loop's shared session,
    entered into ``stack``.

    The first client of a session fills botocore's caches (endpoint rules,
    models): ~100 ms of CPU.  Transfers starting together would each pay it
    (16 at once: seconds); one does, the others then take a few ms each."""
    session = await shared_session()
    shared = _loop_shared()
    if shared.warm:
        return await stack.enter_async_context(session.create_client("s3", **kwargs))
    async with shared.lock:
        client = await stack.enter_async_context(session.create_client("s3", **kwargs))
        shared.warm = True
    return client


class _TransferLoopClients:
    """The S3 clients of one transfer, living in the transfer loop (every
    method runs there, through :func:`~aioims.transfer.offload.run_in_transfer_loop`)."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()

    async def open(self, kwargs: dict[str, Any]) -> Any:
        return await open_client(self._stack, kwargs)

    async def close(self) -> None:
        await self._stack.aclose()


class RemoteClient(ClientWrapper):
    """An aiobotocore client living in the transfer loop, seen from the
    caller's loop: every request method runs there (built, signed, sent and
    parsed off the caller's loop)."""

    __slots__ = ()

    def around(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await run_in_transfer_loop(lambda: method(*args, **kwargs))

        return call


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
    return seconds_left(expires_at)


class S3Clients:
    """The current S3 client of a transfer and its credential refreshes.

    A refresh calls ``refresh()`` for a new :class:`UploadTarget`, opens a new
    client with its credentials (bucket, key and upload id stay the same) and
    makes it current (``generation`` + 1); requests in flight finish on the
    old client, which is closed with the others at the end.  One refresh is
    in flight at a time, shared by every request of the transfer:

    * :meth:`ensure_fresh` (before each request) refreshes ahead of
      ``target.expires_at`` — advisory window: one request refreshes, the
      others proceed, a failure is logged; mandatory window: everyone waits
      for the refresh, a failure raises :class:`CredentialsExpiredError`
      (see :mod:`aioims.transfer.credentials`);
    * :meth:`classify` tells whether a failed request's answer is a refusal
      of its credentials; :meth:`credentials_rejected` then refreshes (or
      joins the refresh in flight) or raises :class:`CredentialsExpiredError`.

    ``factory``: ``config.s3_client_factory`` (a testing hook) replaces
    aiobotocore's ``create_client``.  ``now``: the clock for ``expires_at``
    (aware UTC datetimes; tests pass a fake one).
    """

    def __init__(
        self,
        target: UploadTarget,
        config: TransferConfig,
        refresh: RefreshCallable | None,
        on_refreshed: Callable[[int], None],
        *,
        now: Now | None = None,
    ) -> None:
        self.target = target
        self.config = config
        self.generation = 0
        self.refreshes = 0
        self._refresh = refresh
        self._on_refreshed = on_refreshed
        self._now: Now = now or utcnow
        self._stack = contextlib.AsyncExitStack()
        self._generations: dict[int, Generation] = {}
        self._current: Generation | None = None
        self._inflight: InFlight | None = None
        #: every request of the transfer is handled in the transfer loop
        #: (:mod:`aioims.transfer.offload`)
        self.offloads = (
            config.sender == "thread" and config.offload_s3 and config.s3_client_factory is None
        )
        self._remote: _TransferLoopClients | None = None

    async def __aenter__(self) -> S3Clients:
        lifetime = self._lifetime(self.target)
        self._install(self.target, await self._open(self.target), lifetime, reactive=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            remote, self._remote = self._remote, None
            try:
                if remote is not None:
                    await run_in_transfer_loop(remote.close)
            finally:
                await self._stack.aclose()

    @property
    def client(self) -> Any:
        """The client of the current credentials (requests through it mark
        them as working)."""
        assert self._current is not None, "S3Clients used outside its async with"
        return self._current.client

    async def _open(self, target: UploadTarget) -> Any:
        kwargs = client_kwargs(target, self.config)
        factory = self.config.s3_client_factory
        if factory is not None:
            return await self._stack.enter_async_context(factory(kwargs))
        if self.offloads:
            if self._remote is None:
                self._remote = _TransferLoopClients()
            remote = self._remote
            return RemoteClient(await run_in_transfer_loop(lambda: remote.open(kwargs)))
        return await open_client(self._stack, kwargs)

    def _lifetime(self, target: UploadTarget) -> float | None:
        if target.expires_at is None:
            return None
        return seconds_left(target.expires_at, self._now())

    def _install(
        self, target: UploadTarget, client: Any, lifetime: float | None, *, reactive: bool
    ) -> None:
        number = len(self._generations)
        gen = Generation(number, target, None, lifetime, reactive=reactive)
        gen.client = TrackedClient(client, gen)
        self._generations[number] = gen
        self._current = gen
        self.target = target
        self.generation = number

    # -- proactive refresh ------------------------------------------------------

    def window(self) -> Window:
        """Where the current credentials stand relative to ``expires_at``."""
        gen = self._current
        if gen is None:
            return Window.FRESH
        return window_of(
            gen.target.expires_at, gen.lifetime, self.config.refresh_margin, self._now()
        )

    def expiring(self) -> bool:
        return self.window() is not Window.FRESH

    async def ensure_fresh(self) -> None:
        """Refresh ahead of ``target.expires_at``: called before each request."""
        if self._refresh is None:
            return
        while True:
            gen = self._current
            window = self.window()
            if gen is None or window is Window.FRESH:
                return
            inflight = self._inflight
            if window is Window.ADVISORY:
                if (
                    inflight is not None
                    or gen.advisory_failed
                    or self.refreshes >= self.config.max_refreshes
                ):
                    return  # proceed with the current credentials
                try:
                    await self._run_refresh(RefreshKind.ADVISORY)
                except CredentialsExpiredError as err:
                    gen.advisory_failed = True
                    logger.warning(
                        "refreshing the upload credentials ahead of their expiry failed "
                        "(going on with the current ones): %s",
                        err,
                    )
                return
            # mandatory: nobody sends with these credentials before the refresh
            if inflight is not None:
                await self._join(inflight)
                continue
            if gen.mandatory_tried or self.refreshes >= self.config.max_refreshes:
                return  # let S3 decide; a refusal ends in credentials_rejected
            gen.mandatory_tried = True
            logger.debug("upload credentials expire now or very soon: refreshing")
            await self._run_refresh(RefreshKind.MANDATORY)

    # -- reactive refresh -------------------------------------------------------

    def classify(self, exc: BaseException, generation: int) -> S3Failure | None:
        """Classify a failed request that was signed with the credentials of
        ``generation``.

        Like :func:`classify`, and: an ambiguous refusal (``AccessDenied``,
        a bodiless ``403``, a token-related ``InvalidArgument``) of
        *temporary* credentials is a credential failure (refresh, retry) —
        unless these credentials were just obtained by refreshing after such
        a refusal and have not worked for any request yet, and have not
        expired: then fresh credentials were refused the same way, which is a
        real permission error (PERMANENT).  Without a ``refresh`` callable it
        stays PERMANENT unless ``expires_at`` shows the credentials lapsed."""
        failure = classify(exc)
        if failure is None or not failure.maybe_credentials:
            return failure
        gen = self._generations.get(generation)
        if gen is None or not gen.temporary:
            return failure  # static keys: AccessDenied is AccessDenied
        expired = gen.expired(self._now())
        if self._refresh is None and not expired:
            # Nothing to refresh with, and no sign of expiry: report it as it is.
            return attrs.evolve(
                failure,
                message=f"{failure.message} (temporary credentials: they may have lapsed; "
                "no refresh callable was given)",
            )
        if gen.reactive and not gen.proven and not expired:
            return attrs.evolve(
                failure,
                message=f"{failure.message} (refused again with freshly refreshed credentials: "
                "a permission error, not lapsed credentials)",
            )
        return attrs.evolve(failure, kind=FailureKind.CREDENTIALS)

    async def credentials_rejected(self, generation: int, code: str | None) -> None:
        """S3 rejected the credentials of ``generation``: refresh them (or wait
        for the refresh in flight), or raise :class:`CredentialsExpiredError`."""
        while True:
            if generation != self.generation:
                return  # another request already refreshed: retry with the new ones
            inflight = self._inflight
            if inflight is not None:
                await self._join(inflight)
                continue
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
            await self._run_refresh(RefreshKind.REACTIVE)
            return

    # -- the one refresh in flight ------------------------------------------------

    async def _join(self, inflight: InFlight) -> None:
        await inflight.done.wait()
        failure = inflight.failure_for_waiter()
        if failure is not None:
            raise failure

    async def _run_refresh(self, kind: RefreshKind) -> None:
        assert self._refresh is not None
        inflight = InFlight(kind)
        self._inflight = inflight
        self.refreshes += 1
        try:
            target = await self._fetch_target()
            try:
                lifetime = self._lifetime(target)
                client = await self._open(target)
            except Exception as exc:
                raise self._refresh_error(
                    f"opening an S3 client with the refreshed credentials failed: "
                    f"{type(exc).__name__}: {exc}",
                    "RefreshFailed",
                ) from exc
            self._install(target, client, lifetime, reactive=kind is RefreshKind.REACTIVE)
        except CredentialsExpiredError as err:
            inflight.error = err
            raise
        finally:
            if self._inflight is inflight:
                self._inflight = None
            inflight.done.set()
        logger.info("upload credentials refreshed (%s; %d so far)", kind.value, self.refreshes)
        self._on_refreshed(self.refreshes)

    async def _fetch_target(self) -> UploadTarget:
        assert self._refresh is not None
        try:
            target = await self._refresh()
            if not isinstance(target, UploadTarget):
                raise TypeError(f"refresh() returned {type(target).__name__}, not UploadTarget")
        except Exception as exc:
            raise self._refresh_error(
                f"refreshing the upload credentials failed: {type(exc).__name__}: {exc}",
                "RefreshFailed",
            ) from exc
        if (target.bucket, target.file) != (self.target.bucket, self.target.file):
            raise self._refresh_error(
                "refresh() returned a target for another object "
                f"({target.bucket}/{target.file}, not {self.target.bucket}/{self.target.file})",
                "RefreshMismatch",
            )
        return target

    def _refresh_error(self, message: str, code: str) -> CredentialsExpiredError:
        return CredentialsExpiredError(
            message, operation="refresh", code=code, refreshes=self.refreshes
        )
