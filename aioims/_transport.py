"""The one module that talks to aiohttp.

:class:`Transport` sends a :class:`~aioims._protocol.PreparedRequest`
(applying auth before each attempt), enforces per-attempt timeouts, runs the
retry loop (exponential backoff with full jitter, ``Retry-After``, a total
deadline; reading the time and sleeping through the policy's
:class:`~aioims.config.Clock`, :func:`time.monotonic` and :func:`anyio.sleep`
unless a test injects a fake one) and logs every attempt at DEBUG
on the ``aioims`` logger — method, path, status, attempt, requestId; never
headers, query values or bodies, so credentials cannot leak into logs.

:meth:`Transport.stream` opens a streamed response (redirects followed by
hand, IMS headers not forwarded to another origin) and hands out a
:class:`StreamResponse` whose chunks are read with bounded memory.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import TypeVar

import aiohttp
from yarl import URL

from ._protocol import (
    Envelope,
    PreparedRequest,
    RetryMode,
    decode_response,
    is_retryable,
    retry_after_of,
)
from .auth import Auth
from .config import SYSTEM_CLOCK, Clock, RetryPolicy
from .errors import (
    ConnectionFailedError,
    DecodeError,
    IMSError,
    RequestTimeoutError,
    TransportError,
)

#: asyncio.TimeoutError is only an alias of TimeoutError from Python 3.11 on.
_TIMEOUTS: tuple[type[Exception], ...] = (TimeoutError, asyncio.TimeoutError)
#: What a request (or reading its body) raises when it did not get through.
_CLIENT_FAILURES: tuple[type[Exception], ...] = (aiohttp.ClientError, OSError, *_TIMEOUTS)

logger = logging.getLogger("aioims")

R = TypeVar("R")

SSLOption = ssl_module.SSLContext | bool

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Most bytes read from an error answer of a streamed call.
MAX_ERROR_BODY = 1 << 20
#: Headers still sent when a download is redirected to another origin.
_PORTABLE_HEADERS = frozenset({"user-agent", "accept", "range", "if-range"})


class _AttemptError(Exception):
    """One failed attempt: the error to raise and whether a retry is sane."""

    def __init__(self, error: IMSError, *, request_sent: bool, retryable: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.request_sent = request_sent
        self.retryable = retryable


def _map_client_error(exc: BaseException, timeout: float | None) -> _AttemptError:
    """aiohttp / socket exceptions -> our transport errors."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        err: IMSError = RequestTimeoutError(f"could not connect within {timeout}s")
        return _AttemptError(err, request_sent=False)
    if isinstance(exc, _TIMEOUTS):
        return _AttemptError(RequestTimeoutError(f"no answer within {timeout}s"), request_sent=True)
    if isinstance(exc, aiohttp.ClientSSLError):
        err = ConnectionFailedError(f"TLS handshake/verification failed: {exc}")
        return _AttemptError(err, request_sent=False, retryable=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _AttemptError(ConnectionFailedError(f"cannot connect: {exc}"), request_sent=False)
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError)):
        err = ConnectionFailedError(f"connection broken: {type(exc).__name__}: {exc}")
        return _AttemptError(err, request_sent=True)
    return _AttemptError(
        TransportError(f"{type(exc).__name__}: {exc}"), request_sent=True, retryable=False
    )


def _is_json(headers: Mapping[str, str]) -> bool:
    return "json" in headers.get("Content-Type", "").lower()


class StreamResponse:
    """A response whose body is read chunk by chunk (see :meth:`iter_chunks`)."""

    def __init__(self, response: aiohttp.ClientResponse, timeout: float | None) -> None:
        self._response = response
        self._timeout = timeout
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers
        self.url: str = str(response.url)

    @property
    def content_length(self) -> int | None:
        return self._response.content_length

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id")

    async def iter_chunks(self, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the body in chunks of at most ``chunk_size`` bytes.

        A broken or truncated body raises :class:`ConnectionFailedError`, a
        stalled one :class:`RequestTimeoutError` (after ``timeout`` seconds
        without data).
        """
        try:
            async for chunk in self._response.content.iter_chunked(chunk_size):
                yield chunk
        except _CLIENT_FAILURES as exc:
            mapped = _map_client_error(exc, self._timeout).error
            mapped.http_status = self.status
            mapped.request_id = self.request_id
            raise mapped from exc

    def _finish(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class Transport:
    """Sends prepared requests over a (possibly borrowed) aiohttp session."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        auth: Auth | None = None,
        ssl: SSLOption = True,
    ) -> None:
        self._http = http
        self._auth = auth
        self._ssl = ssl
        #: per-attempt timeout (s) -> its aiohttp.ClientTimeout (a handful of values)
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        #: full URL -> its yarl.URL (recent ones: calls repeat their URLs)
        self._urls: dict[str, URL] = {}

    @property
    def http(self) -> aiohttp.ClientSession:
        return self._http

    def _client_timeout(self, total: float) -> aiohttp.ClientTimeout:
        """``aiohttp.ClientTimeout(total=total)``, made once per value."""
        found = self._timeouts.get(total)
        if found is None:
            if len(self._timeouts) >= 64:  # retry deadlines make ever new values
                self._timeouts.clear()
            found = self._timeouts[total] = aiohttp.ClientTimeout(total=total)
        return found

    def _url(self, full_url: str) -> URL:
        """``URL(full_url, encoded=True)``, kept for the URLs used lately."""
        found = self._urls.get(full_url)
        if found is None:
            if len(self._urls) >= 256:
                self._urls.clear()
            found = self._urls[full_url] = URL(full_url, encoded=True)
        return found

    # -- retry loop ----------------------------------------------------------

    async def _run(
        self,
        request: PreparedRequest,
        timeout: float,
        retry: RetryPolicy,
        mode: RetryMode,
        attempt: Callable[[PreparedRequest, float, int, float], Awaitable[R]],
    ) -> R:
        """Call ``attempt(prepared, per_try_timeout, number, started)`` until it
        returns, a failure is not retryable, or the policy's attempts or
        deadline run out.  With auth, ``prepared`` is a fresh copy of
        ``request`` that auth amended; without, ``request`` itself (only read)."""
        clock = retry.clock or SYSTEM_CLOCK
        started = clock.monotonic()
        deadline = None if retry.deadline is None else started + retry.deadline
        number = 0
        while True:
            number += 1
            per_try = timeout
            if deadline is not None:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    raise RequestTimeoutError(
                        f"{request.method} {request.path}: retry deadline of "
                        f"{retry.deadline}s exceeded"
                    )
                per_try = min(timeout, remaining)
            if self._auth is not None:  # on a copy: the next attempt starts afresh
                prepared = request.copy()
                await self._auth.apply(prepared)
            else:
                prepared = request  # only read
            try:
                return await attempt(prepared, per_try, number, started)
            except _AttemptError as failure:
                error, sent, retryable = failure.error, failure.request_sent, failure.retryable
                cause: BaseException | None = failure.__cause__
            except IMSError as exc:
                error, sent, retryable, cause = exc, True, True, exc.__cause__
            self._log(prepared, number, retry, error=error, started=started, clock=clock)
            if (
                not retryable
                or number >= retry.max_attempts
                or not is_retryable(error, mode, request_sent=sent)
            ):
                raise error from cause
            delay = retry.compute_delay(number, retry_after_of(error))
            if deadline is not None and clock.monotonic() + delay >= deadline:
                logger.debug(
                    "IMS %s %s: not retrying, a %.3fs wait would pass the %ss deadline",
                    request.method,
                    request.path,
                    delay,
                    retry.deadline,
                )
                raise error from cause
            logger.debug(
                "IMS %s %s: retry %d in %.3fs after %s",
                request.method,
                request.path,
                number,
                delay,
                type(error).__name__,
            )
            await clock.sleep(delay)

    @staticmethod
    def _log(
        request: PreparedRequest,
        number: int,
        retry: RetryPolicy,
        *,
        started: float,
        clock: Clock = SYSTEM_CLOCK,
        status: int | None = None,
        request_id: str | None = None,
        error: IMSError | None = None,
    ) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        if error is not None:
            status = error.http_status
            request_id = error.request_id
        outcome = str(status) if status is not None else "-"
        if error is not None:
            outcome += f" {type(error).__name__}" + (f" {error.code}" if error.code else "")
        logger.debug(
            "IMS %s %s -> %s attempt=%d/%d requestId=%s elapsed=%.3fs",
            request.method,
            request.path,
            outcome,
            number,
            retry.max_attempts,
            request_id,
            clock.monotonic() - started,
        )

    # -- plain JSON calls ----------------------------------------------------

    async def send(
        self,
        request: PreparedRequest,
        *,
        timeout: float,
        retry: RetryPolicy,
        mode: RetryMode,
    ) -> Envelope:
        """Send ``request`` (with retries) and decode the envelope."""

        async def attempt(
            prepared: PreparedRequest, per_try: float, number: int, started: float
        ) -> Envelope:
            url = self._url(prepared.full_url)
            client_timeout = self._client_timeout(per_try)
            try:
                if prepared.body or self._ssl is not True:
                    context = self._http.request(
                        prepared.method,
                        url,
                        headers=prepared.headers,
                        data=prepared.body or None,
                        timeout=client_timeout,
                        ssl=self._ssl,
                    )
                else:  # aiohttp's defaults: no body, ssl=True (fewer arguments to pass on)
                    context = self._http.request(
                        prepared.method, url, headers=prepared.headers, timeout=client_timeout
                    )
                async with context as response:
                    body = await response.read()
                    status, headers = response.status, response.headers
            except _CLIENT_FAILURES as exc:
                raise _map_client_error(exc, per_try) from exc
            envelope = decode_response(status, headers, body)
            if logger.isEnabledFor(logging.DEBUG):
                self._log(
                    prepared,
                    number,
                    retry,
                    started=started,
                    clock=retry.clock or SYSTEM_CLOCK,
                    status=status,
                    request_id=envelope.request_id,
                )
            return envelope

        return await self._run(request, timeout, retry, mode, attempt)

    # -- streamed calls ------------------------------------------------------

    @asynccontextmanager
    async def stream(
        self,
        request: PreparedRequest,
        *,
        timeout: float,
        retry: RetryPolicy,
        mode: RetryMode = RetryMode.SAFE,
        ok_statuses: Collection[int] = (200, 206),
        max_redirects: int = 10,
    ) -> AsyncIterator[StreamResponse]:
        """Open a streamed response (retrying until its headers arrive).

        ``timeout`` bounds connecting and each read (not the whole body).
        An IMS envelope, a JSON body or a status outside ``ok_statuses``
        raises the mapped error.  Redirects are followed; headers other than
        User-Agent/Accept/Range are dropped when the target is another origin.
        """
        clock = retry.clock or SYSTEM_CLOCK

        async def attempt(
            prepared: PreparedRequest, per_try: float, number: int, started: float
        ) -> aiohttp.ClientResponse:
            client_timeout = aiohttp.ClientTimeout(total=None, connect=per_try, sock_read=per_try)
            origin = URL(prepared.url).origin()
            url = URL(prepared.full_url, encoded=True)
            headers: dict[str, str] = dict(prepared.headers)
            method = prepared.method
            body: bytes | None = prepared.body or None
            for _hop in range(max_redirects + 1):
                try:
                    response = await self._http.request(
                        method,
                        url,
                        headers=headers,
                        data=body,
                        timeout=client_timeout,
                        ssl=self._ssl,
                        allow_redirects=False,
                    )
                except _CLIENT_FAILURES as exc:
                    raise _map_client_error(exc, per_try) from exc
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    response.release()
                    url = response.url.join(URL(location))
                    if response.status == 303:
                        method, body = "GET", None
                    if url.origin() != origin:
                        headers = {
                            k: v for k, v in headers.items() if k.lower() in _PORTABLE_HEADERS
                        }
                    continue
                request_id = response.headers.get("x-request-id")
                if response.status in ok_statuses and not _is_json(response.headers):
                    self._log(
                        prepared,
                        number,
                        retry,
                        started=started,
                        clock=clock,
                        status=response.status,
                        request_id=request_id,
                    )
                    return response
                try:
                    error_body = await _read_bounded(response, MAX_ERROR_BODY)
                except _CLIENT_FAILURES as exc:
                    raise _map_client_error(exc, per_try) from exc
                finally:
                    response.close()
                envelope = decode_response(response.status, response.headers, error_body)
                raise DecodeError(
                    f"expected file content, got HTTP {response.status} "
                    f"with an envelope ({envelope.code})",
                    request_id=envelope.request_id,
                    http_status=response.status,
                )
            raise TransportError(f"more than {max_redirects} redirects")

        response = await self._run(request, timeout, retry, mode, attempt)
        wrapped = StreamResponse(response, timeout)
        try:
            yield wrapped
        finally:
            wrapped._finish()


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = await response.content.read(limit - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
