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

Policy
    Credentials issued with ``scope=UploadScope(bucket, key)`` (as the
    emulator's ``upload-prepare`` does) may only do what an upload of that
    object needs (:mod:`aioims.emulator.s3policy`); anything else -> 403
    ``AccessDenied``.  Unscoped credentials (admin/test use) reach everything
    the upstream keys reach -- except the backend's own endpoints
    (``/moto-api/...``), which are never forwarded, whatever the credentials.

Forwarding
    Path-style requests only (``/bucket/key``).  Method, raw path and query
    (``?uploads``, ``partNumber``, ``uploadId``...), ``Content-Length``,
    ``Content-MD5``, ``Content-Type`` and ``x-amz-*`` headers go to the upstream
    unchanged; status and headers (``ETag``, ``Content-Length``,
    ``Content-Range``, ``x-amz-*``) come back unchanged, each header once
    (moto's duplicate ``Server`` headers would break aiohttp's strict parser
    under ``python -X dev``) and without hop-by-hop headers.  Bodies stream both
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
    ``when="after"`` (``"reset"``/``"error"``): the request is forwarded first
    (its side effect happens), then the answer is dropped or replaced -- the
    lost response of a CreateMultipartUpload, UploadPart or
    CompleteMultipartUpload.

Statistics
    ``front.stats`` (:class:`~aioims.emulator.s3faults.FrontStats`) counts
    requests per operation as they arrive, the UploadPart part numbers, the
    credential rejections per code and the faults that fired.

A client sending ``Expect: 100-continue`` gets ``100 Continue`` only once the
request is accepted; a rejected one gets its error and the connection closes.
A client that disconnects mid-request is logged as one INFO line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import logging
import re
import ssl
import typing
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from aioims.emulator.s3auth import CredentialStore, TemporaryCredentials
from aioims.emulator.s3faults import FaultHit, FaultRule, FaultSet, FrontStats, detect_operation
from aioims.emulator.s3policy import UploadScope, check_scope, denied, is_moto_endpoint
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
    "UploadScope",
    "clean_response_headers",
]

log = logging.getLogger("aioims.emulator.s3front")

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
#: response headers that may appear more than once (all others: the first one wins)
_REPEATABLE = frozenset({"set-cookie", "vary", "warning", "www-authenticate"})


def clean_response_headers(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """The upstream's answer headers as the front sends them on: no hop-by-hop
    headers (nor those its ``Connection`` header names), and each header once
    (moto sends two ``Server`` headers, which aiohttp's strict parser -- used
    under ``python -X dev`` -- rejects)."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
        if token.strip()
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower in _HOP_BY_HOP or lower in named:
            continue
        if lower in out and lower not in _REPEATABLE:
            continue
        out.add(name, value)
    return out


_MAX_KNOWN_UPLOADS = 100_000
_UPLOAD = re.compile(rb"<Upload>(.*?)</Upload>", re.DOTALL)
_KEY = re.compile(rb"<Key>(.*?)</Key>", re.DOTALL)
_UPLOAD_ID = re.compile(rb"<UploadId>(.*?)</UploadId>", re.DOTALL)


def _listed_uploads(body: bytes) -> list[tuple[str, str]]:
    """``(key, upload id)`` pairs of a ListMultipartUploads answer."""
    out = []
    for block in _UPLOAD.findall(body):
        key, upload = _KEY.search(block), _UPLOAD_ID.search(block)
        if key is not None and upload is not None:
            text = html.unescape(key.group(1).decode()), html.unescape(upload.group(1).decode())
            out.append(text)
    return out


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
        #: upload id -> (bucket, key), as the upstream listed them
        self._upload_keys: dict[str, tuple[str, str]] = {}

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
    def issue_credentials(
        self, lifetime: float | None = 3600.0, *, scope: UploadScope | None = None
    ) -> TemporaryCredentials:
        """New temporary credentials valid for ``lifetime`` seconds (None: forever).

        ``scope`` limits them to uploading one object (see
        :mod:`aioims.emulator.s3policy`); the emulator's ``upload-prepare``
        always passes one.  Unscoped credentials are for admin and test use."""
        return self.credentials.issue(lifetime, scope=scope)

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
        try:
            return await self._handle_exchange(_Exchange(request))
        except ConnectionError as exc:  # the client went away (send_continue, a write...)
            log.info(
                "S3 front: client %s disconnected during %s %s (%s)",
                request.remote,
                request.method,
                request.path,
                type(exc).__name__,
            )
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)  # never sent: the connection is gone

    async def _handle_exchange(self, exchange: _Exchange) -> web.StreamResponse:
        request = exchange.request
        raw_path, _, raw_query = request.raw_path.partition("?")
        pairs = split_query(raw_query)
        query = dict(pairs)
        path = unquote(raw_path)
        operation = detect_operation(
            request.method, path, query, "x-amz-copy-source" in request.headers
        )
        part = query.get("partNumber")
        part_number = int(part) if part is not None and part.isdigit() else None
        self.stats.requests[operation] += 1
        if operation == "UploadPart" and part_number is not None:
            self.stats.part_numbers.append(part_number)
        if is_moto_endpoint(path):
            self.stats.rejected["AccessDenied"] += 1
            return await self._error(
                exchange, denied("the backend's own endpoints are not reachable")
            )
        try:
            auth = self.credentials.authenticate(
                request.method,
                raw_path,
                raw_query,
                request.headers,
                verify_signature=self.verify_signatures,
            )
            scope = self.credentials.scope_of(auth.access_key)
            if scope is not None:
                check_scope(scope, operation, request.method, path, pairs, request.headers)
                upload_id = query.get("uploadId")
                if upload_id is not None:
                    await self._check_upload_of(scope, upload_id)
        except S3Error as exc:
            self.stats.rejected[exc.code] += 1
            return await self._error(exchange, exc)
        rule = self.faults.pick(operation, part_number)
        if rule is None:
            return await self._forward(exchange, raw_path, raw_query, auth)
        self.stats.faults.append(FaultHit(operation, part_number, rule.action, rule.code))
        if rule.delay > 0:
            await asyncio.sleep(rule.delay)
        if rule.when == "after":
            return await self._after(exchange, raw_path, raw_query, auth, rule)
        if rule.action == "reset":
            return await self._reset(exchange)
        if rule.action == "expire":
            self.expire(auth.access_key)
            return await self._error(exchange, S3Error(400, "ExpiredToken"))
        if rule.action == "error":
            return await self._error(exchange, S3Error(rule.status, rule.code, rule.message))
        return await self._forward(exchange, raw_path, raw_query, auth)

    async def _after(
        self,
        exchange: _Exchange,
        raw_path: str,
        raw_query: str,
        auth: RequestAuth,
        rule: FaultRule,
    ) -> web.StreamResponse:
        """The lost response: forward (the side effect happens), then replace the answer."""
        status = await self._forward(exchange, raw_path, raw_query, auth, discard=True)
        log.debug("S3 front: %s answered %s upstream, then %s", rule.operation, status, rule.action)
        if rule.action == "reset":
            request = exchange.request
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never sent: the connection is gone
        return await self._error(exchange, S3Error(rule.status, rule.code, rule.message))

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

    @typing.overload
    async def _forward(
        self,
        exchange: _Exchange,
        raw_path: str,
        raw_query: str,
        auth: RequestAuth,
        *,
        discard: typing.Literal[False] = False,
    ) -> web.StreamResponse: ...

    @typing.overload
    async def _forward(
        self,
        exchange: _Exchange,
        raw_path: str,
        raw_query: str,
        auth: RequestAuth,
        *,
        discard: typing.Literal[True],
    ) -> int | None: ...

    async def _forward(
        self,
        exchange: _Exchange,
        raw_path: str,
        raw_query: str,
        auth: RequestAuth,
        *,
        discard: bool = False,
    ) -> web.StreamResponse | int | None:
        """Forward the request; answer the client with the upstream's answer,
        or (``discard``) read and drop that answer and return its status
        (``None`` when the upstream could not be reached)."""
        request = exchange.request
        assert self._session is not None, "S3Front not started"
        try:
            url, headers, body = self._outgoing(exchange, raw_path, raw_query, auth)
        except S3Error as exc:
            return None if discard else await self._error(exchange, exc)
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
                if discard:
                    while await upstream.content.readany():
                        pass
                    return upstream.status
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.headers.extend(clean_response_headers(upstream.headers))
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(self._chunk):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            if discard:
                return None
            if response is not None and response.prepared:
                if request.transport is not None:  # too late for an answer: truncate
                    request.transport.abort()
                return response
            if exchange.body_error is not None:
                return await self._error(exchange, exchange.body_error)
            return await self._error(
                exchange, S3Error(503, "ServiceUnavailable", f"Upstream S3 failed: {exc!r}")
            )

    async def _check_upload_of(self, scope: UploadScope, upload_id: str) -> None:
        """A scoped credential may only name uploads of its own key (S3 binds
        an upload id to its key; moto does not check): else 404 ``NoSuchUpload``.
        Asked of the upstream once per upload id (its own keys), then cached."""
        known = self._upload_keys.get(upload_id)
        if known is None:
            known = await self._upstream_upload_key(scope, upload_id)
        if known != (scope.bucket, scope.key):
            raise S3Error(404, "NoSuchUpload", "The specified upload does not exist.")

    async def _upstream_upload_key(
        self, scope: UploadScope, upload_id: str
    ) -> tuple[str, str] | None:
        assert self._session is not None, "S3Front not started"
        path = f"{self._upstream_prefix}/{quote(scope.bucket, safe='')}"
        raw_query = f"prefix={quote(scope.key, safe='')}&uploads="
        headers: CIMultiDict[str] = CIMultiDict({"Host": self._upstream_host})
        headers.update(
            sign_headers(
                "GET", path, raw_query, headers,
                access_key=self.upstream_access_key, secret_key=self.upstream_secret_key,
                region=self.upstream_region,
            )
        )  # fmt: skip
        url = yarl.URL(f"{self._upstream_origin}{path}?{raw_query}", encoded=True)
        try:
            async with self._session.get(url, headers=headers) as answer:
                body = await answer.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise S3Error(503, "ServiceUnavailable", f"Upstream S3 failed: {exc!r}") from None
        if answer.status != 200:
            return None
        for key, found in _listed_uploads(body):
            if len(self._upload_keys) >= _MAX_KNOWN_UPLOADS:
                self._upload_keys.clear()
            self._upload_keys[found] = (scope.bucket, key)
        return self._upload_keys.get(upload_id)

    # -- admin -------------------------------------------------------------
    def reset(self) -> None:
        """Back to a clean front: no fault rules, zeroed statistics, every
        temporary credential revoked (static keys stay)."""
        self.faults.clear()
        self.stats.reset()
        self.credentials.revoke_temporary()
        self._upload_keys.clear()

    def __repr__(self) -> str:
        state: dict[str, Any] = {"url": self.url or None, "upstream": self.upstream}
        return f"S3Front({', '.join(f'{k}={v!r}' for k, v in state.items())})"
