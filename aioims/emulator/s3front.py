"""S3 front: a credential-checking, fault-injecting reverse proxy for S3.

The IMS emulator's ``upload-prepare`` answers with the front's URL as
``domain`` and with temporary credentials the front issued, so uploads go
through the front exactly as a real deployment's temporary-credential S3
endpoint would be used; the front forwards them to the real S3 server (the
embedded moto server, or any S3-compatible server such as MinIO)::

    async with S3Front("http://127.0.0.1:9000") as front:    # upstream S3
        creds = front.issue_credentials(lifetime=3600.0)    # TemporaryCredentials
        front.faults.add(FaultRule(operation="UploadPart", part_numbers={2}))
        ...  # S3 clients use front.url, creds.access_key/secret_key/token
        front.stats.count("UploadPart"), front.stats.part_numbers

Credentials
    :meth:`S3Front.issue_credentials` returns :class:`TemporaryCredentials`
    (``ASIA…`` access key, 40-character secret, session token, ``expires_at``
    in UTC; ``lifetime=None`` never expires).  :meth:`S3Front.add_static_credentials`
    registers a key pair without token or expiry (admin use);
    :meth:`S3Front.revoke` forgets a key and :meth:`S3Front.expire` expires
    one now (the keys live in ``front.credentials``, a
    :class:`~aioims.emulator.s3auth.CredentialStore`).  The access key comes from the SigV4
    ``Authorization`` header or a presigned URL's ``X-Amz-Credential``, the
    token from ``x-amz-security-token`` (header or query).  Answers, as real S3
    XML errors with ``x-amz-request-id``: no authentication -> 403
    ``AccessDenied``; unknown or revoked key -> 403 ``InvalidAccessKeyId``;
    missing or wrong token (or a token for a static key) -> 400 ``InvalidToken``;
    expired -> 400 ``ExpiredToken``; SigV2 -> 400 ``InvalidRequest`` (note
    that boto3 presigns S3 URLs with SigV2 unless given
    ``Config(signature_version="s3v4")``).  With
    ``verify_signatures=True`` (the default) the SigV4 signature is recomputed
    (header-signed and presigned requests, any declared payload hash) -> 403
    ``SignatureDoesNotMatch``; an expired presigned URL -> 403 ``AccessDenied``;
    and a body whose ``x-amz-content-sha256`` is a real digest is hashed while
    it streams (the last block is held back, so a mismatch never reaches the
    upstream) -> 400 ``XAmzContentSHA256Mismatch``.  Chunk signatures of
    ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` bodies and clock skew are not checked.

Forwarding
    Path-style requests only (``/bucket/key``).  Method, raw path and query
    (``?uploads``, ``partNumber``, ``uploadId``...), ``Content-Length``,
    ``Content-MD5``, ``Content-Type`` and ``x-amz-*`` headers go to the upstream
    unchanged; status and headers (``ETag``, ``Content-Length``,
    ``Content-Range``, ``x-amz-*``) come back unchanged.  Bodies stream both
    ways in ``chunk_size`` blocks (bounded memory); ``Expect: 100-continue`` is
    honoured.  ``resign=True`` (default)
    drops the client's ``Authorization``/``x-amz-security-token``/``x-amz-date``
    (and presign query parameters), sets ``Host`` to the upstream's and signs
    again with ``upstream_access_key``/``upstream_secret_key``/``upstream_region``
    and ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` (or
    ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` for such aws-chunked bodies, which
    pass unchanged; signed-chunk aws-chunked bodies are decoded, as their chunk
    signatures cannot survive re-signing, and their trailer checksums dropped).
    ``resign=False`` forwards every header, ``Host`` included, unchanged, so
    the client's own signature stays valid for an upstream with the same keys.
    An unreachable upstream -> 503 ``ServiceUnavailable``; ``upstream_ssl``
    is the ``ssl`` argument for an https upstream (a context for a private CA,
    or ``False``); ``ssl_context`` makes the front itself serve https.

Faults
    ``front.faults`` is a :class:`~aioims.emulator.s3faults.FaultSet` of
    :class:`~aioims.emulator.s3faults.FaultRule` (see that module for matching,
    ``times``/``probability`` and the JSON form).  Faults apply after the
    credential check.  ``delay`` (any action) sleeps first; ``"error"`` answers
    S3 XML with ``status``/``code`` (after reading the body, so clients see the
    answer, not a broken pipe); ``"reset"`` reads part of the body then aborts
    the connection with no answer (clients see a connection error; aiohttp,
    hence aiobotocore, silently resends an idempotent PUT once, so use
    ``times>=2`` to make aiobotocore see it);
    ``"expire"`` expires the credentials used and answers 400 ``ExpiredToken``.

Statistics
    ``front.stats`` (:class:`~aioims.emulator.s3faults.FrontStats`) counts
    requests per operation as they arrive, the UploadPart part numbers, the
    credential rejections per code and the faults that fired.

A client sending ``Expect: 100-continue`` gets ``100 Continue`` only once the
request is accepted; a rejected one gets its error and the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict

from aioims.emulator.s3auth import CredentialStore, TemporaryCredentials
from aioims.emulator.s3faults import FaultHit, FaultRule, FaultSet, FrontStats, detect_operation
from aioims.emulator.s3sigv4 import (
    PRESIGN_PARAMS,
    STREAMING_SIGNED,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    RequestAuth,
    S3Error,
    decode_aws_chunked,
    new_request_id,
    sign_headers,
    split_query,
)

__all__ = [
    "CredentialStore",
    "FaultRule",
    "FaultSet",
    "FrontStats",
    "S3Front",
    "TemporaryCredentials",
]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_CLIENT_AUTH = ("Authorization", "x-amz-security-token", "x-amz-date", "x-amz-content-sha256")


class _Exchange:
    """One client request: whether its body may be (or was) read."""

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request
        self.expects_continue = request.headers.get("Expect", "").lower() == "100-continue"
        self.continued = False
        self.body_error: S3Error | None = None

    async def send_continue(self) -> None:
        if self.expects_continue and not self.continued:
            self.continued = True
            await self.request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.request.writer.output_size = 0


class S3Front:
    """The reverse proxy (see the module docstring)."""

    def __init__(
        self,
        upstream: str,
        *,
        upstream_access_key: str = "testing",
        upstream_secret_key: str = "testing",  # noqa: S107 - moto's well-known test key
        upstream_region: str = "us-east-1",
        host: str = "127.0.0.1",
        port: int = 0,
        resign: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        verify_signatures: bool = True,
        upstream_ssl: ssl.SSLContext | bool = True,
        chunk_size: int = 1 << 16,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_host = parts.netloc
        self._upstream_origin = f"{parts.scheme}://{parts.netloc}"
        self._upstream_prefix = parts.path.rstrip("/")
        self.upstream_access_key = upstream_access_key
        self.upstream_secret_key = upstream_secret_key
        self.upstream_region = upstream_region
        self.host = host
        self.port = port
        self.resign = resign
        self.verify_signatures = verify_signatures
        self._ssl_context = ssl_context
        self._upstream_ssl = upstream_ssl
        self._chunk = chunk_size
        self.faults = FaultSet()
        self.stats = FrontStats()
        self.url = ""
        self.credentials = CredentialStore()
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> str:
        if self._runner is not None:
            raise RuntimeError("S3Front already started")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, ssl=self._upstream_ssl),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=30),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        runner = web.ServerRunner(web.Server(self._handle), shutdown_timeout=2.0)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._session.close()
            self._session = None
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{scheme}://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        session, self._session = self._session, None
        if runner is not None:
            await runner.cleanup()
        if session is not None:
            await session.close()

    async def __aenter__(self) -> S3Front:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- credentials (see CredentialStore) ---------------------------------
    def issue_credentials(self, lifetime: float | None = 3600.0) -> TemporaryCredentials:
        """New temporary credentials valid for ``lifetime`` seconds (None: forever)."""
        return self.credentials.issue(lifetime)

    def add_static_credentials(self, access_key: str, secret_key: str) -> None:
        """Accept a long-lived key pair (no session token, no expiry)."""
        self.credentials.add_static(access_key, secret_key)

    def revoke(self, access_key: str) -> bool:
        """Forget a key; its requests then get ``InvalidAccessKeyId``."""
        return self.credentials.revoke(access_key)

    def expire(self, access_key: str) -> None:
        """Make temporary credentials expired now (static ones never expire)."""
        self.credentials.expire(access_key)

    # -- request handling --------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        exchange = _Exchange(request)
        raw_path, _, raw_query = request.raw_path.partition("?")
        query = dict(split_query(raw_query))
        operation = detect_operation(
            request.method, unquote(raw_path), query, "x-amz-copy-source" in request.headers
        )
        part = query.get("partNumber")
        part_number = int(part) if part is not None and part.isdigit() else None
        self.stats.requests[operation] += 1
        if operation == "UploadPart" and part_number is not None:
            self.stats.part_numbers.append(part_number)
        try:
            auth = self.credentials.authenticate(
                request.method,
                raw_path,
                raw_query,
                request.headers,
                verify_signature=self.verify_signatures,
            )
        except S3Error as exc:
            self.stats.rejected[exc.code] += 1
            return await self._error(exchange, exc)
        rule = self.faults.pick(operation, part_number)
        if rule is not None:
            self.stats.faults.append(FaultHit(operation, part_number, rule.action, rule.code))
            if rule.delay > 0:
                await asyncio.sleep(rule.delay)
            if rule.action == "reset":
                return await self._reset(exchange)
            if rule.action == "expire":
                self.expire(auth.access_key)
                return await self._error(exchange, S3Error(400, "ExpiredToken"))
            if rule.action == "error":
                return await self._error(exchange, S3Error(rule.status, rule.code, rule.message))
        return await self._forward(exchange, raw_path, raw_query, auth)

    async def _error(self, exchange: _Exchange, error: S3Error) -> web.Response:
        request_id = new_request_id()
        response = web.Response(
            status=error.status,
            body=error.to_xml(request_id),
            content_type="application/xml",
            headers={"x-amz-request-id": request_id, "x-amz-id-2": request_id.lower()},
        )
        content = exchange.request.content
        if exchange.request.body_exists and not content.is_eof():
            if exchange.body_error is not None or (
                exchange.expects_continue and not exchange.continued
            ):
                response.force_close()  # the body never comes, or is broken
            else:
                try:  # read the body, so that the client gets to read the answer
                    while await content.readany():
                        pass
                except (OSError, aiohttp.ClientError):
                    response.force_close()
        return response

    async def _reset(self, exchange: _Exchange) -> web.StreamResponse:
        request = exchange.request
        if request.body_exists:
            await exchange.send_continue()
            with contextlib.suppress(asyncio.TimeoutError, OSError, aiohttp.ClientError):
                await asyncio.wait_for(request.content.read(self._chunk), 5.0)
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never sent: the connection is gone

    async def _guard(self, body: AsyncIterator[bytes], exchange: _Exchange) -> AsyncIterator[bytes]:
        try:
            async for chunk in body:
                yield chunk
        except S3Error as exc:
            exchange.body_error = exc
            raise

    async def _hashed(self, body: AsyncIterator[bytes], expected: str) -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        held: bytes | None = None
        async for chunk in body:
            digest.update(chunk)
            if held is not None:
                yield held
            held = chunk
        if digest.hexdigest() != expected.lower():
            raise S3Error(400, "XAmzContentSHA256Mismatch")
        if held is not None:
            yield held

    def _outgoing(
        self, exchange: _Exchange, raw_path: str, raw_query: str, auth: RequestAuth
    ) -> tuple[str, CIMultiDict[str], AsyncIterator[bytes] | None]:
        request = exchange.request
        headers: CIMultiDict[str] = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP
        )
        content_sha = headers.get("x-amz-content-sha256", "")
        body: AsyncIterator[bytes] | None = None
        if request.body_exists:
            body = aiter(request.content.iter_chunked(self._chunk))
        if body is not None and self.verify_signatures and len(content_sha) == 64:
            body = self._hashed(body, content_sha)
        path = self._upstream_prefix + raw_path
        if self.resign:
            if auth.presigned:
                raw_query = "&".join(
                    part
                    for part in raw_query.split("&")
                    if part and unquote(part.partition("=")[0]) not in PRESIGN_PARAMS
                )
            for name in _CLIENT_AUTH:
                headers.popall(name, None)
            payload_hash = UNSIGNED_PAYLOAD
            if content_sha == STREAMING_UNSIGNED_TRAILER:
                payload_hash = content_sha
            elif content_sha in STREAMING_SIGNED and body is not None:
                body = decode_aws_chunked(request.content, self._chunk)
                decoded = headers.popall("x-amz-decoded-content-length", [""])[0]
                if not decoded.isdigit():
                    raise S3Error(
                        411, "MissingContentLength", "x-amz-decoded-content-length required"
                    )
                headers["Content-Length"] = decoded
                encodings = [
                    e.strip()
                    for e in headers.popall("Content-Encoding", [""])[0].split(",")
                    if e.strip() and e.strip() != "aws-chunked"
                ]
                if encodings:
                    headers["Content-Encoding"] = ",".join(encodings)
                for name in ("x-amz-trailer", "x-amz-sdk-checksum-algorithm"):
                    headers.popall(name, None)
            headers["Host"] = self._upstream_host
            headers.update(
                sign_headers(
                    request.method,
                    path,
                    raw_query,
                    headers,
                    access_key=self.upstream_access_key,
                    secret_key=self.upstream_secret_key,
                    region=self.upstream_region,
                    payload_hash=payload_hash,
                )
            )
        url = f"{self._upstream_origin}{path}" + (f"?{raw_query}" if raw_query else "")
        return url, headers, None if body is None else self._guard(body, exchange)

    async def _forward(
        self, exchange: _Exchange, raw_path: str, raw_query: str, auth: RequestAuth
    ) -> web.StreamResponse:
        request = exchange.request
        assert self._session is not None, "S3Front not started"
        try:
            url, headers, body = self._outgoing(exchange, raw_path, raw_query, auth)
        except S3Error as exc:
            return await self._error(exchange, exc)
        if body is not None:
            await exchange.send_continue()
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method,
                yarl.URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=("Content-Type", "Accept", "Accept-Encoding", "User-Agent"),
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(self._chunk):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            if response is not None and response.prepared:
                if request.transport is not None:  # too late for an answer: truncate
                    request.transport.abort()
                return response
            if exchange.body_error is not None:
                return await self._error(exchange, exchange.body_error)
            return await self._error(
                exchange, S3Error(503, "ServiceUnavailable", f"Upstream S3 failed: {exc!r}")
            )

    def __repr__(self) -> str:
        state: dict[str, Any] = {"url": self.url or None, "upstream": self.upstream}
        return f"S3Front({', '.join(f'{k}={v!r}' for k, v in state.items())})"
