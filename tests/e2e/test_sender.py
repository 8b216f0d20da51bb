"""The threaded part sender (``aioims.transfer.sender``) on the wire.

A scripted raw HTTP/1.1 server on 127.0.0.1 (plain or TLS) plays the faults:
reset mid-body, 5xx/429, 403 before the body ends, a silent server, keep-alive
connections closed between requests; plus the TLS matrix, a proxy, a
cancellation in the middle of a part, a golden comparison of the signed
request with aiobotocore's own, and byte-exact uploads to moto.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import io
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
    SSLError,
)

from aioims.transfer.config import TransferConfig
from aioims.transfer.region import FileRegion
from aioims.transfer.s3 import FailureKind, classify, client_config
from aioims.transfer.sender import (
    SEND_SLICE,
    THREAD_MIN_BODY,
    ThreadedSession,
    sender_pool_size,
)

MiB = 1024 * 1024
ETAG = '"0123456789abcdef0123456789abcdef"'

# --------------------------------------------------------------------------
# A scripted raw HTTP/1.1 server


class Wire:
    """One accepted connection, with a read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read_head(self) -> tuple[str, str, dict[str, str]] | None:
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return method, target, headers

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(min(max(n - len(self.buffer), 65536), 4 * MiB))
            if not data:
                raise ConnectionResetError("client closed")
            self.buffer += data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def answer(self, status: int, body: bytes = b"", *, close: bool = False) -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", f"ETag: {ETAG}"]
        if close:
            head.append("Connection: close")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def reset(self) -> None:
        linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # on, 0 s: close sends RST
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self.sock.close()


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.target, self.headers, self.body = method, target, headers, body


class Head:
    """A request's head, its connection's number and its number on it."""

    def __init__(
        self, method: str, target: str, headers: dict[str, str], conn: int, n: int
    ) -> None:
        self.method, self.target, self.headers, self.conn, self.n = (
            method,
            target,
            headers,
            conn,
            n,
        )


# script(server, wire, head) -> False to end the connection.
Script = Callable[["RawServer", Wire, Head], bool]


def error_xml(code: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>scripted</Message></Error>".encode()


def read_body(server: RawServer, wire: Wire, h: Head) -> bytes:
    if h.headers.get("expect", "").lower() == "100-continue":
        wire.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = wire.read(int(h.headers.get("content-length", "0")))
    server.requests.append(Request(h.method, h.target, h.headers, body))
    return body


def ok_script(server: RawServer, wire: Wire, h: Head) -> bool:
    read_body(server, wire, h)
    wire.answer(200)
    return True


class RawServer:
    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[Request] = []
        self.events: dict[str, threading.Event] = {
            name: threading.Event() for name in ("started", "release", "eof")
        }
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._stopping = False
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self._stopping:
                sock.close()
                return
            self.connections += 1
            thread = threading.Thread(
                target=self._serve, args=(sock, self.connections), daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket, number: int) -> None:
        self._socks.append(sock)
        try:
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                self._socks.append(sock)
            wire = Wire(sock)
            n = 0
            while True:
                head = wire.read_head()
                if head is None:
                    return
                n += 1
                if not self.script(self, wire, Head(*head, number, n)):
                    return
        except OSError:
            return
        finally:
            sock.close()

    def stop(self) -> None:
        self._stopping = True
        self.events["release"].set()
        with contextlib.suppress(OSError):  # wakes the accepting thread
            socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        self.listener.close()
        for sock in list(self._socks):
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(script: Script = ok_script, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(script, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@asynccontextmanager
async def s3_client(url: str, **options: Any) -> AsyncIterator[Any]:
    verify = options.pop("verify", None)
    config = AioConfig(
        http_session_cls=options.pop("http_session_cls", ThreadedSession),
        s3=options.pop("s3", {"addressing_style": "path"}),
        retries={"total_max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=options.pop("connect_timeout", 5),
        read_timeout=options.pop("read_timeout", 10),
        **options,
    )
    async with get_session().create_client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="token/with+odd=chars",
        verify=verify,
        config=config,
    ) as client:
        yield client


def session_of(client: Any) -> ThreadedSession:
    session = client._endpoint.http_session
    assert isinstance(session, ThreadedSession)
    return session


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


BODY = bytes(range(256)) * (3 * MiB // 256) + b"tail"  # 3 MiB + 4: several slices


# --------------------------------------------------------------------------
# Plain behaviour, faults


async def test_put_sent_by_thread_keeps_alive(serve: Callable[..., RawServer]) -> None:
    server = serve()
    async with s3_client(server.url) as client:
        for key in ("a", "b"):
            response = await client.put_object(Bucket="bkt", Key=key, Body=io.BytesIO(BODY))
            assert response["ETag"] == ETAG
        await client.head_bucket(Bucket="bkt")  # small: the aiohttp path
        session = session_of(client)
        assert (session.threaded_sends, session.fallback_sends) == (2, 1)
        assert sender_pool_size() >= 1
    assert [r.body == BODY for r in server.requests[:2]] == [True, True]
    assert "expect" not in server.requests[0].headers
    # the two threaded PUTs share one keep-alive connection; aiohttp has its own
    assert server.connections == 2


async def test_body_from_current_position_of_bytesio(serve: Callable[..., RawServer]) -> None:
    server = serve()
    buffer = io.BytesIO(b"skip" + BODY)
    buffer.seek(4)
    async with s3_client(server.url) as client:
        await client.put_object(Bucket="bkt", Key="k", Body=buffer)
        assert session_of(client).threaded_sends == 1
    assert server.requests[0].body == BODY


class ProgressBuffer(io.BytesIO):
    """Like the driver's PartBuffer: ``on_read(position)`` as the body is sent."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.positions: list[int] = []
        self.on_read = self.positions.append


async def test_progress_callback_and_bytes_body(serve: Callable[..., RawServer]) -> None:
    server = serve()
    buffer = ProgressBuffer(BODY)
    async with s3_client(server.url) as client:
        await client.put_object(Bucket="bkt", Key="a", Body=buffer)
        await client.put_object(Bucket="bkt", Key="b", Body=BODY)  # bytes
        assert session_of(client).threaded_sends == 2
    assert buffer.positions == sorted(buffer.positions)
    assert len(buffer.positions) == -(-len(BODY) // SEND_SLICE)  # one per slice
    assert buffer.positions[-1] == len(BODY) == buffer.tell()  # consumed, as with aiohttp
    assert [r.body == BODY for r in server.requests] == [True, True]


def reset_mid_body(server: RawServer, wire: Wire, h: Head) -> bool:
    wire.read(64 * 1024)
    wire.reset()
    return False


async def test_reset_mid_body_is_a_transient_connection_error(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(reset_mid_body)
    async with s3_client(server.url) as client:
        with pytest.raises(ConnectionClosedError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(BODY))
    failure = classify(caught.value)
    assert failure is not None and failure.kind is FailureKind.TRANSIENT


@pytest.mark.parametrize(
    ("status", "code"), [(503, "SlowDown"), (500, "InternalError"), (429, "TooManyRequests")]
)
async def test_error_status_after_body(
    serve: Callable[..., RawServer], status: int, code: str
) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        read_body(server, wire, h)
        wire.answer(status if h.n == 1 else 200, error_xml(code) if h.n == 1 else b"")
        return True

    server = serve(script)
    async with s3_client(server.url) as client:
        with pytest.raises(ClientError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(BODY))
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        failure = classify(caught.value)
        assert failure is not None and failure.kind is FailureKind.TRANSIENT
        await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(BODY))  # same connection
    assert server.connections == 1
    assert server.requests[1].body == BODY


@pytest.mark.parametrize("hard_close", [False, True])
async def test_403_before_the_body_ends_is_read(
    serve: Callable[..., RawServer], hard_close: bool
) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        if h.conn == 1:
            wire.read(64 * 1024)
            wire.answer(403, error_xml("AccessDenied"), close=True)
            if hard_close:
                wire.sock.close()  # unread body: the client gets a reset
                return False
            wire.sock.shutdown(socket.SHUT_WR)
            while wire.sock.recv(1 << 20):  # drain, as a lingering close does
                pass
            return False
        return ok_script(server, wire, h)

    server = serve(script)
    body = BODY * 8  # 24 MiB: more than the socket buffers take
    async with s3_client(server.url) as client:
        with pytest.raises(ClientError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(body))
        assert caught.value.response["Error"]["Code"] == "AccessDenied"
        failure = classify(caught.value)
        assert failure is not None and failure.kind is FailureKind.PERMANENT
        # the connection that answered early is not reused
        await client.put_object(Bucket="bkt", Key="k2", Body=io.BytesIO(BODY))
    assert server.connections == 2
    assert server.requests[-1].body == BODY


async def test_silent_server_read_timeout(serve: Callable[..., RawServer]) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        read_body(server, wire, h)
        server.events["release"].wait(30)
        return False

    server = serve(script)
    body = BODY[:THREAD_MIN_BODY]  # fits in the socket buffers: only the answer can be late
    async with s3_client(server.url, read_timeout=0.3) as client:
        with pytest.raises(ReadTimeoutError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(body))
        assert session_of(client).threaded_sends == 1
    failure = classify(caught.value)
    assert failure is not None and failure.kind is FailureKind.TRANSIENT


async def test_keep_alive_closed_while_idle_reconnects(serve: Callable[..., RawServer]) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        read_body(server, wire, h)
        wire.answer(200)
        return False  # closes the connection right after answering (keep-alive promised)

    server = serve(script)
    async with s3_client(server.url) as client:
        for key in ("a", "b", "c"):
            await client.put_object(Bucket="bkt", Key=key, Body=io.BytesIO(BODY))
    assert server.connections == 3
    assert [r.body == BODY for r in server.requests] == [True] * 3


async def test_keep_alive_dropped_at_reuse_is_not_an_attempt(
    serve: Callable[..., RawServer],
) -> None:
    """The server closes a kept-alive connection as the next request arrives
    (the race an idle check cannot see): the sender resends on a new
    connection; botocore (1 attempt) sees no error."""

    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        if h.conn == 1 and h.n == 2:
            wire.reset()
            return False
        return ok_script(server, wire, h)

    server = serve(script)
    async with s3_client(server.url) as client:
        await client.put_object(Bucket="bkt", Key="a", Body=io.BytesIO(BODY))
        await client.put_object(Bucket="bkt", Key="b", Body=io.BytesIO(BODY))
    assert server.connections == 2
    assert [r.target for r in server.requests] == ["/bkt/a", "/bkt/b"]
    assert all(r.body == BODY for r in server.requests)


# --------------------------------------------------------------------------
# Cancellation


async def test_cancel_mid_part_waits_for_the_thread(serve: Callable[..., RawServer]) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        wire.read(64 * 1024)
        server.events["started"].set()
        server.events["release"].wait(30)  # stop reading: the client's send blocks
        try:
            while wire.sock.recv(1 << 20):
                pass
        except OSError:
            pass
        server.events["eof"].set()  # the client gave up the connection
        return False

    server = serve(script)
    body = BODY * 16  # 48 MiB: far more than the socket buffers hold
    original = hashlib.sha256(body).digest()
    buffer = io.BytesIO(body)
    async with s3_client(server.url, read_timeout=30) as client:
        task = asyncio.ensure_future(client.put_object(Bucket="bkt", Key="k", Body=buffer))
        assert await asyncio.to_thread(server.events["started"].wait, 10)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The worker let go of the buffer before the coroutine returned:
        # resizing it would raise BufferError while a view is exported.
        assert hashlib.sha256(buffer.getvalue()).digest() == original
        buffer.truncate(0)
        buffer.write(b"reused")
        server.events["release"].set()
        assert await asyncio.to_thread(server.events["eof"].wait, 10)
        # the sender still works afterwards
        server.script = ok_script
        await client.put_object(Bucket="bkt", Key="k2", Body=io.BytesIO(BODY))
    assert server.requests[-1].body == BODY


# --------------------------------------------------------------------------
# TLS


def _write_ca(directory: Path, name: str) -> tuple[Any, Any, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA, a leaf for IP 127.0.0.1 (no DNS name) and another CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert, ca_path = _write_ca(directory, "test-ca")
    _, _, other_path = _write_ca(directory, "other-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / "leaf.pem"
    key_path = directory / "leaf.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"ca": ca_path, "other": other_path, "cert": cert_path, "key": key_path}


@pytest.fixture(scope="module")
def server_tls(pki: dict[str, Path]) -> ssl.SSLContext:
    """The scripted server's TLS context (the leaf of ``pki``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    return context


@pytest.fixture
def tls_server(serve: Callable[..., RawServer], server_tls: ssl.SSLContext) -> RawServer:
    return serve(ok_script, tls=server_tls)


async def test_tls_ip_certificate_with_ca_bundle(
    tls_server: RawServer, pki: dict[str, Path]
) -> None:
    async with s3_client(tls_server.url, verify=str(pki["ca"])) as client:
        for key in ("a", "b"):
            await client.put_object(Bucket="bkt", Key=key, Body=io.BytesIO(BODY))
        assert session_of(client).threaded_sends == 2
    assert [r.body == BODY for r in tls_server.requests] == [True, True]
    assert tls_server.connections == 1  # TLS keep-alive


async def test_tls_wrong_ca_fails_fatally(tls_server: RawServer, pki: dict[str, Path]) -> None:
    async with s3_client(tls_server.url, verify=str(pki["other"])) as client:
        with pytest.raises(SSLError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(BODY))
    failure = classify(caught.value)
    assert failure is not None and failure.kind is FailureKind.FATAL
    assert tls_server.requests == []


async def test_tls_verify_off(tls_server: RawServer) -> None:
    async with s3_client(tls_server.url, verify=False) as client:
        await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(BODY))
        assert session_of(client).threaded_sends == 1
    assert tls_server.requests[0].body == BODY


async def test_tls_system_store_rejects_private_ca(tls_server: RawServer) -> None:
    async with s3_client(tls_server.url) as client:  # verify=True: default store
        with pytest.raises(SSLError):
            await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(BODY))


# --------------------------------------------------------------------------
# Proxy: the request goes through aiohttp (and so through the proxy)


async def test_proxy_falls_back_to_aiohttp(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = serve()
    async with s3_client(
        "http://s3.example.invalid:8443", proxies={"http": f"http://127.0.0.1:{proxy.port}"}
    ) as client:
        await client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(BODY))
        session = session_of(client)
        assert (session.threaded_sends, session.fallback_sends) == (0, 1)
    assert proxy.requests[0].target == "http://s3.example.invalid:8443/bkt/k"
    assert proxy.requests[0].body == BODY


# --------------------------------------------------------------------------
# Golden: the thread sender sends what aiobotocore would send


async def test_signed_request_equals_aiobotocores(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.auth

    frozen = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: frozen)
    key = "dir one/ünï cödé+%20~*(x)=&?#.bin"
    server = serve()
    from aiobotocore.httpsession import AIOHTTPSession

    for session_cls in (AIOHTTPSession, ThreadedSession):
        async with s3_client(server.url, http_session_cls=session_cls) as client:
            await client.upload_part(
                Bucket="bkt",
                Key=key,
                UploadId="up/1+2=3",
                PartNumber=7,
                Body=io.BytesIO(BODY),
                ContentMD5=md5_b64(BODY),
            )
    aio, threaded = server.requests
    assert (threaded.method, threaded.target) == (aio.method, aio.target)
    assert threaded.body == aio.body == BODY
    authorization = threaded.headers["authorization"]
    assert authorization == aio.headers["authorization"]
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token", "content-md5"} <= set(signed)
    for name in signed:
        assert threaded.headers[name] == aio.headers[name], name
    assert threaded.headers["host"] == f"127.0.0.1:{server.port}"
    assert threaded.headers["content-length"] == aio.headers["content-length"]
    # nothing the server sees differs but what is not signed (and no Expect)
    for name, value in threaded.headers.items():
        if name not in ("accept-encoding", "amz-sdk-invocation-id"):  # random per request
            assert aio.headers.get(name) == value, name


# --------------------------------------------------------------------------
# Byte-exact against moto, through aioims' client_config hook


def test_client_config_hook() -> None:
    assert client_config(TransferConfig(sender="thread")).http_session_cls is ThreadedSession
    assert client_config(TransferConfig(sender="aiohttp")).http_session_cls is not ThreadedSession


async def test_multipart_byte_exact_on_moto(s3_url: str, bucket: str, boto3_s3: Any) -> None:
    data = os.urandom(11 * MiB + 7)
    sizes = [5 * MiB, 5 * MiB, MiB + 7]
    key = "images/a b+c/ü.qcow2"
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        verify=False,
        config=client_config(TransferConfig(sender="thread")),
    ) as client:
        upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
        parts = []
        offset = 0
        buffer = io.BytesIO()
        for number, size in enumerate(sizes, 1):
            chunk = data[offset : offset + size]
            offset += size
            buffer.seek(0)
            buffer.truncate()
            buffer.write(chunk)  # one reused part buffer, as the driver does
            buffer.seek(0)
            response = await client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=buffer,
                ContentMD5=md5_b64(chunk),
            )
            parts.append({"PartNumber": number, "ETag": response["ETag"]})
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
        await client.put_object(Bucket=bucket, Key="single", Body=io.BytesIO(data[: 2 * MiB]))
        assert session_of(client).threaded_sends == 4
    got = boto3_s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    single = boto3_s3.get_object(Bucket=bucket, Key="single")["Body"].read()
    assert single == data[: 2 * MiB]


def test_slice_is_smaller_than_the_test_bodies() -> None:
    assert len(BODY) > SEND_SLICE


# --------------------------------------------------------------------------
# Per-part checksums (aioims.transfer.checksums)


def test_crc32c_known_values() -> None:
    from aioims.transfer import checksums

    assert checksums.crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert checksums._crc32c_python(b"123456789") == 0xE3069283
    data = os.urandom(600 * 1024 + 3)
    buffer = io.BytesIO(data)
    view = buffer.getbuffer()
    try:
        whole = checksums.crc32c(view)  # a writable view of a part buffer
        assert (
            whole == checksums.crc32c(data) == checksums._crc32c_python(data[:4096] + data[4096:])
        )
        assert checksums.crc32c(data[1000:], checksums.crc32c(data[:1000])) == whole
    finally:
        view.release()
    assert checksums.part_checksum_params("crc32c", data) == {
        "ChecksumCRC32C": base64.b64encode(whole.to_bytes(4, "big")).decode()
    }
    assert checksums.part_checksum_params("md5", data) == {"ContentMD5": md5_b64(data)}
    assert checksums.part_checksum_params(None, data) == {}
    with pytest.raises(ValueError):
        checksums.part_checksum_params("auto", data)


@pytest.mark.parametrize("threaded", [False, True])
async def test_given_crc32c_is_sent_as_is(serve: Callable[..., RawServer], threaded: bool) -> None:
    """botocore (request_checksum_calculation="when_required") sends the
    caller's ChecksumCRC32C unchanged: no trailer, no aws-chunked body."""
    from aiobotocore.httpsession import AIOHTTPSession

    from aioims.transfer.checksums import crc32c_b64

    server = serve()
    value = crc32c_b64(BODY)
    session_cls = ThreadedSession if threaded else AIOHTTPSession
    async with s3_client(server.url, http_session_cls=session_cls) as client:
        await client.upload_part(
            Bucket="bkt",
            Key="k",
            UploadId="u",
            PartNumber=1,
            Body=io.BytesIO(BODY),
            ChecksumCRC32C=value,
        )
    (request,) = server.requests
    assert request.headers["x-amz-checksum-crc32c"] == value
    assert request.headers["content-length"] == str(len(BODY))
    assert "x-amz-trailer" not in request.headers
    assert "aws-chunked" not in request.headers.get("content-encoding", "")
    assert "x-amz-checksum-crc32c" in request.headers["authorization"]  # signed
    assert request.body == BODY


# The CRC32C probe is an Engine request (Engine.probe_crc32c): tested on FakeS3
# in tests/unit/test_driver_rules.py and on moto / the S3 front in
# tests/e2e/test_checksums.py.


# --------------------------------------------------------------------------
# Through aioims' upload_file (TransferConfig(sender="thread"))


async def test_upload_file_with_the_thread_sender(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aioims import UploadTarget
    from aioims.transfer import upload_file

    sent: list[int] = []
    original = ThreadedSession._run

    def counting(self: ThreadedSession, job: Any, url: str) -> Any:
        sent.append(len(job.body))
        return original(self, job, url)

    monkeypatch.setattr(ThreadedSession, "_run", counting)
    data = os.urandom(13 * MiB + 5)
    path = tmp_path / "image.qcow2"
    path.write_bytes(data)
    target = UploadTarget(
        access_key="testing", secret_key="testing", bucket=bucket, file="img/a b.qcow2",
        domain=s3_url,
    )  # fmt: skip
    config = TransferConfig(sender="thread", part_size=5 * MiB, max_concurrency=3)
    result = await upload_file(target, path, config=config)
    assert result.size == len(data)
    assert sorted(sent) == [3 * MiB + 5, 5 * MiB, 5 * MiB]
    got = boto3_s3.get_object(Bucket=bucket, Key="img/a b.qcow2")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


# --------------------------------------------------------------------------
# File regions (aioims.transfer.region): sendfile on plain HTTP, read by a
# worker thread on the other paths


#: No payload signing: botocore would SHA-256 (read) the body over HTTP.
UNSIGNED = {"addressing_style": "path", "payload_signing_enabled": False}


class CountingRegion(FileRegion):
    """A FileRegion that counts reads (botocore must not read it on the
    sendfile path) and notes the threads that read it."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__(fd, offset, length)
        self.reads = 0
        self.read_threads: list[int] = []
        self.positions: list[int] = []
        self.on_read = self.positions.append

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        self.read_threads.append(threading.get_ident())
        return super().read(size)

    def to_buffer(self) -> Any:
        self.reads += 1
        self.read_threads.append(threading.get_ident())
        return super().to_buffer()


@pytest.fixture
def region_file(tmp_path: Path) -> Iterator[Callable[[bytes], int]]:
    """``open_file(data)``: a file holding ``data``, opened read-only (an fd)."""
    fds: list[int] = []

    def open_file(data: bytes) -> int:
        path = tmp_path / f"file-{len(fds)}.bin"
        path.write_bytes(data)
        fds.append(os.open(path, os.O_RDONLY))
        return fds[-1]

    yield open_file
    for fd in fds:
        os.close(fd)


async def test_region_sent_with_sendfile_and_never_read(
    serve: Callable[..., RawServer], region_file: Callable[[bytes], int]
) -> None:
    from botocore.utils import determine_content_length

    server = serve()
    fd = region_file(b"head" + BODY + b"trailing bytes")
    region = CountingRegion(fd, 4, len(BODY))
    assert determine_content_length(region) == len(BODY) < os.fstat(fd).st_size
    small = CountingRegion(fd, 0, 10)  # below THREAD_MIN_BODY: still sendfile (aiohttp would read)
    async with s3_client(server.url, s3=UNSIGNED) as client:
        await client.upload_part(Bucket="bkt", Key="k", UploadId="u", PartNumber=1, Body=region)
        await client.put_object(Bucket="bkt", Key="small", Body=small)
        session = session_of(client)
        assert (session.sendfile_sends, session.threaded_sends, session.fallback_sends) == (2, 2, 0)
    assert (region.reads, small.reads) == (0, 0)
    assert [r.body for r in server.requests] == [BODY, b"head" + BODY[:6]]
    assert server.requests[0].headers["content-length"] == str(len(BODY))
    assert "expect" not in server.requests[0].headers
    assert server.connections == 1  # keep-alive across sendfile requests
    # consumed as aiohttp leaves a body; progress after every slice
    assert region.tell() == len(BODY)
    assert region.positions == sorted(region.positions)
    assert len(region.positions) == -(-len(BODY) // SEND_SLICE)
    assert region.positions[-1] == len(BODY)
    # Why the driver sends regions only without payload signing: botocore
    # signs an HTTP payload unless told not to, reading the whole body.
    signed = CountingRegion(fd, 4, len(BODY))
    async with s3_client(server.url) as client:
        await client.put_object(Bucket="bkt", Key="signed", Body=signed)
    assert signed.reads > 0
    assert server.requests[-1].body == BODY


async def test_region_stale_keep_alive_reconnects(
    serve: Callable[..., RawServer], region_file: Callable[[bytes], int]
) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        if h.conn == 1 and h.n == 2:
            wire.reset()  # drops the kept-alive connection as the request arrives
            return False
        return ok_script(server, wire, h)

    server = serve(script)
    fd = region_file(BODY)
    async with s3_client(server.url, s3=UNSIGNED) as client:
        for key in ("a", "b"):
            await client.put_object(Bucket="bkt", Key=key, Body=CountingRegion(fd, 0, len(BODY)))
        assert session_of(client).sendfile_sends == 2
    assert server.connections == 2
    assert [(r.target, r.body == BODY) for r in server.requests] == [
        ("/bkt/a", True),
        ("/bkt/b", True),
    ]


async def test_region_403_before_the_body_ends_is_read(
    serve: Callable[..., RawServer], region_file: Callable[[bytes], int]
) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        if h.conn == 1:
            wire.read(64 * 1024)
            wire.answer(403, error_xml("AccessDenied"), close=True)
            wire.sock.shutdown(socket.SHUT_WR)
            while wire.sock.recv(1 << 20):
                pass
            return False
        return ok_script(server, wire, h)

    server = serve(script)
    fd = region_file(BODY * 8)  # 24 MiB: more than the socket buffers take
    async with s3_client(server.url, s3=UNSIGNED) as client:
        with pytest.raises(ClientError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=CountingRegion(fd, 0, 24 * MiB))
        assert caught.value.response["Error"]["Code"] == "AccessDenied"
        await client.put_object(Bucket="bkt", Key="k2", Body=CountingRegion(fd, 0, len(BODY)))
    assert server.connections == 2
    assert server.requests[-1].body == BODY


async def test_region_of_a_file_that_shrank_fails_clearly(
    serve: Callable[..., RawServer], region_file: Callable[[bytes], int], tmp_path: Path
) -> None:
    """sendfile reaches the end of the file before the region's end: a
    SourceChangedError (not an S3 failure: never retried), the connection
    closed — the server is not left waiting for the missing bytes."""
    from aioims.transfer.errors import SourceChangedError

    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        try:
            read_body(server, wire, h)
        except ConnectionResetError:
            server.events["eof"].set()  # the client closed the connection mid-body
            return False
        wire.answer(200)
        return True

    server = serve(script)
    fd = region_file(BODY)
    region = CountingRegion(fd, 0, len(BODY))
    os.truncate(tmp_path / "file-0.bin", SEND_SLICE + 100)  # shrinks under the open fd
    async with s3_client(server.url, s3=UNSIGNED) as client:
        with pytest.raises(SourceChangedError, match="shrank"):
            await client.put_object(Bucket="bkt", Key="k", Body=region)
        assert classify(SourceChangedError("x")) is None  # not retried by the engine
        assert await asyncio.to_thread(server.events["eof"].wait, 10)
        # the sender still works (a new connection)
        await client.put_object(Bucket="bkt", Key="k2", Body=io.BytesIO(BODY))
    assert server.connections == 2
    assert [r.target for r in server.requests] == ["/bkt/k2"]
    assert region.reads == 0


async def test_region_silent_server_times_out(
    serve: Callable[..., RawServer], region_file: Callable[[bytes], int]
) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        server.events["release"].wait(30)  # reads nothing: sendfile waits for room
        return False

    server = serve(script)
    fd = region_file(BODY * 16)  # 48 MiB: far more than the socket buffers hold
    async with s3_client(server.url, read_timeout=0.3, s3=UNSIGNED) as client:
        with pytest.raises(ReadTimeoutError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=CountingRegion(fd, 0, 48 * MiB))
    failure = classify(caught.value)
    assert failure is not None and failure.kind is FailureKind.TRANSIENT


async def test_region_cancel_mid_sendfile_waits_for_the_thread(
    serve: Callable[..., RawServer],
    region_file: Callable[[bytes], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aioims.transfer import sender

    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        wire.read(64 * 1024)
        server.events["started"].set()
        server.events["release"].wait(30)  # stop reading: sendfile blocks
        try:
            while wire.sock.recv(1 << 20):
                pass
        except OSError:
            pass
        server.events["eof"].set()  # the client gave up the connection
        return False

    inside: list[str] = []
    original = sender._send_file

    def tracked(conn: Any, job: Any) -> bool:
        inside.append("enter")
        try:
            return original(conn, job)
        finally:
            inside.append("exit")

    monkeypatch.setattr(sender, "_send_file", tracked)
    server = serve(script)
    fd = region_file(BODY * 16)  # 48 MiB
    async with s3_client(server.url, read_timeout=30, s3=UNSIGNED) as client:
        task = asyncio.ensure_future(
            client.put_object(Bucket="bkt", Key="k", Body=CountingRegion(fd, 0, 48 * MiB))
        )
        assert await asyncio.to_thread(server.events["started"].wait, 10)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the worker thread had left sendfile before the coroutine returned
        assert inside == ["enter", "exit"]
        server.events["release"].set()
        assert await asyncio.to_thread(server.events["eof"].wait, 10)  # socket shut down
        server.script = ok_script
        await client.put_object(Bucket="bkt", Key="k2", Body=CountingRegion(fd, 0, len(BODY)))
    assert server.requests[-1].body == BODY


async def test_region_through_a_proxy_is_read_off_the_loop(
    serve: Callable[..., RawServer],
    region_file: Callable[[bytes], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = serve()
    fd = region_file(b"x" * 100 + BODY)
    region = CountingRegion(fd, 100, len(BODY))
    async with s3_client(
        "http://s3.example.invalid:8443",
        proxies={"http": f"http://127.0.0.1:{proxy.port}"},
        s3=UNSIGNED,
    ) as client:
        await client.put_object(Bucket="bkt", Key="k", Body=region)
        session = session_of(client)
        assert (session.sendfile_sends, session.fallback_sends) == (0, 1)
    assert proxy.requests[0].target == "http://s3.example.invalid:8443/bkt/k"
    assert proxy.requests[0].body == BODY
    assert region.reads == 1 and region.read_threads[0] != threading.get_ident()
    assert region.tell() == len(BODY)
    assert region.positions and region.positions[-1] == len(BODY)  # progress via aiohttp's reads


# --------------------------------------------------------------------------
# File regions over TLS: read slice by slice by the worker thread that sends
# them, into its own slice buffer (no part buffer, no executor hop)


@pytest.fixture
def slice_buffers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """``(thread id, id of the buffer, its size)`` of every slice buffer the
    sender threads took."""
    from aioims.transfer import sender

    taken: list[tuple[int, int, int]] = []
    original = sender._slice_buffer

    def noting() -> memoryview:
        view = original()
        taken.append((threading.get_ident(), id(view.obj), len(view)))
        return view

    monkeypatch.setattr(sender, "_slice_buffer", noting)
    return taken


@pytest.fixture
def part_buffers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the part buffers (``PartBuffer``) allocated, wherever."""
    from aioims.transfer.hashing import PartBuffer

    sizes: list[int] = []
    original = io.BytesIO.__init__

    def counting(self: Any, initial_bytes: Any = b"") -> None:
        sizes.append(len(initial_bytes))
        original(self, initial_bytes)

    monkeypatch.setattr(PartBuffer, "__init__", counting)
    return sizes


async def test_region_over_tls_is_read_by_the_sending_thread(
    tls_server: RawServer,
    pki: dict[str, Path],
    region_file: Callable[[bytes], int],
    slice_buffers: list[tuple[int, int, int]],
    part_buffers: list[int],
) -> None:
    fd = region_file(b"head" + BODY * 2 + b"trailing bytes")
    region = CountingRegion(fd, 4, len(BODY))
    second = CountingRegion(fd, 4 + len(BODY), len(BODY))
    small = CountingRegion(fd, 0, 10)  # below THREAD_MIN_BODY: still the thread's
    async with s3_client(tls_server.url, verify=str(pki["ca"]), s3=UNSIGNED) as client:
        await client.upload_part(Bucket="bkt", Key="k", UploadId="u", PartNumber=1, Body=region)
        await client.upload_part(Bucket="bkt", Key="k", UploadId="u", PartNumber=2, Body=second)
        await client.put_object(Bucket="bkt", Key="small", Body=small)
        session = session_of(client)
        counts = (session.sendfile_sends, session.region_sends, session.threaded_sends)
        assert counts == (0, 3, 3) and session.fallback_sends == 0
    assert [r.body for r in tls_server.requests] == [BODY, BODY, b"head" + BODY[:6]]
    assert tls_server.requests[0].headers["content-length"] == str(len(BODY))
    assert tls_server.connections == 1  # TLS keep-alive across regions
    # nobody but the sending thread read it: no read(), no to_buffer(), no part buffer
    assert (region.reads, second.reads, small.reads) == (0, 0, 0)
    assert part_buffers == []
    # one slice buffer per worker thread, SEND_SLICE bytes, reused, never shared
    assert len(slice_buffers) == 3
    assert all(size == SEND_SLICE for _, _, size in slice_buffers)
    assert threading.get_ident() not in {thread for thread, _, _ in slice_buffers}
    owners: dict[int, int] = {}
    for thread, buffer, _ in slice_buffers:
        assert owners.setdefault(buffer, thread) == thread
    # consumed as aiohttp leaves a body; progress after every slice
    assert region.tell() == len(BODY)
    assert region.positions == sorted(region.positions)
    assert len(region.positions) == -(-len(BODY) // SEND_SLICE)
    assert region.positions[-1] == len(BODY)


async def test_region_over_tls_stale_keep_alive_resends_from_the_start(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    pki: dict[str, Path],
    region_file: Callable[[bytes], int],
) -> None:
    """The kept-alive TLS connection is dropped after the server took more
    than a slice of the second request's body: the thread sends the region
    again on a new connection, re-read from the region's start."""
    body = BODY * 4  # 12 MiB: more than the socket buffers take

    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        if h.conn == 1 and h.n == 2:
            wire.read(SEND_SLICE + SEND_SLICE // 2)
            wire.reset()
            return False
        return ok_script(server, wire, h)

    server = serve(script, tls=server_tls)
    fd = region_file(body)
    async with s3_client(server.url, verify=str(pki["ca"]), s3=UNSIGNED) as client:
        for key in ("a", "b"):
            region = CountingRegion(fd, 0, len(body))
            await client.put_object(Bucket="bkt", Key=key, Body=region)
            assert region.tell() == len(body) and region.reads == 0
        assert session_of(client).region_sends == 2
    assert server.connections == 2
    assert [(r.target, r.body == body) for r in server.requests] == [
        ("/bkt/a", True),
        ("/bkt/b", True),
    ]


async def test_region_over_tls_403_before_the_body_ends_is_read(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    pki: dict[str, Path],
    region_file: Callable[[bytes], int],
) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        if h.conn == 1:
            wire.read(64 * 1024)
            wire.answer(403, error_xml("AccessDenied"), close=True)
            with contextlib.suppress(OSError):  # drain the records, undecrypted
                while socket.socket.recv(wire.sock, 1 << 20):
                    pass
            return False
        return ok_script(server, wire, h)

    server = serve(script, tls=server_tls)
    fd = region_file(BODY * 8)  # 24 MiB: more than the socket buffers take
    async with s3_client(server.url, verify=str(pki["ca"]), s3=UNSIGNED) as client:
        with pytest.raises(ClientError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=CountingRegion(fd, 0, 24 * MiB))
        assert caught.value.response["Error"]["Code"] == "AccessDenied"
        failure = classify(caught.value)
        assert failure is not None and failure.kind is FailureKind.PERMANENT
        # the connection that answered early is not reused
        await client.put_object(Bucket="bkt", Key="k2", Body=CountingRegion(fd, 0, len(BODY)))
        assert session_of(client).region_sends == 2
    assert server.connections == 2
    assert server.requests[-1].body == BODY


async def test_region_over_tls_of_a_file_that_shrank_fails_clearly(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    pki: dict[str, Path],
    region_file: Callable[[bytes], int],
    tmp_path: Path,
) -> None:
    """The read of the second slice comes back short: a SourceChangedError
    (never retried), the connection closed with the body unfinished — the
    server never gets a short body, nor is it left waiting."""
    from aioims.transfer.errors import SourceChangedError

    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        try:
            read_body(server, wire, h)
        except OSError:
            server.events["eof"].set()  # the client closed the connection mid-body
            return False
        wire.answer(200)
        return True

    server = serve(script, tls=server_tls)
    fd = region_file(BODY)
    region = CountingRegion(fd, 0, len(BODY))
    os.truncate(tmp_path / "file-0.bin", SEND_SLICE + 100)  # shrinks under the open fd
    async with s3_client(server.url, verify=str(pki["ca"]), s3=UNSIGNED) as client:
        with pytest.raises(SourceChangedError, match="shrank"):
            await client.put_object(Bucket="bkt", Key="k", Body=region)
        assert classify(SourceChangedError("x")) is None  # not retried by the engine
        assert await asyncio.to_thread(server.events["eof"].wait, 10)
        # the sender still works (a new connection)
        await client.put_object(Bucket="bkt", Key="k2", Body=io.BytesIO(BODY))
    assert server.connections == 2
    assert [r.target for r in server.requests] == ["/bkt/k2"]
    assert region.reads == 0


async def test_region_over_tls_silent_server_times_out(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    pki: dict[str, Path],
    region_file: Callable[[bytes], int],
) -> None:
    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        server.events["release"].wait(30)  # reads nothing: sendall waits for room
        return False

    server = serve(script, tls=server_tls)
    fd = region_file(BODY * 16)  # 48 MiB: far more than the socket buffers hold
    async with s3_client(
        server.url, verify=str(pki["ca"]), read_timeout=0.3, s3=UNSIGNED
    ) as client:
        with pytest.raises(ReadTimeoutError) as caught:
            await client.put_object(Bucket="bkt", Key="k", Body=CountingRegion(fd, 0, 48 * MiB))
    failure = classify(caught.value)
    assert failure is not None and failure.kind is FailureKind.TRANSIENT


async def test_region_over_tls_cancel_mid_body_waits_for_the_thread(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    pki: dict[str, Path],
    region_file: Callable[[bytes], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aioims.transfer import sender

    def script(server: RawServer, wire: Wire, h: Head) -> bool:
        wire.read(64 * 1024)
        server.events["started"].set()
        server.events["release"].wait(30)  # stop reading: the thread's sendall blocks
        with contextlib.suppress(OSError):
            while socket.socket.recv(wire.sock, 1 << 20):
                pass
        server.events["eof"].set()  # the client gave up the connection
        return False

    inside: list[str] = []
    original = sender._send_file_slices

    def tracked(conn: Any, job: Any) -> bool:
        inside.append("enter")
        try:
            return original(conn, job)
        finally:
            inside.append("exit")

    monkeypatch.setattr(sender, "_send_file_slices", tracked)
    server = serve(script, tls=server_tls)
    fd = region_file(BODY * 16)  # 48 MiB
    async with s3_client(server.url, verify=str(pki["ca"]), read_timeout=30, s3=UNSIGNED) as client:
        task = asyncio.ensure_future(
            client.put_object(Bucket="bkt", Key="k", Body=CountingRegion(fd, 0, 48 * MiB))
        )
        assert await asyncio.to_thread(server.events["started"].wait, 10)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the worker thread had let go of the file before the coroutine returned
        assert inside == ["enter", "exit"]
        server.events["release"].set()
        assert await asyncio.to_thread(server.events["eof"].wait, 10)  # socket shut down
        server.script = ok_script
        await client.put_object(Bucket="bkt", Key="k2", Body=CountingRegion(fd, 0, len(BODY)))
    assert inside == ["enter", "exit"] * 2
    assert server.requests[-1].body == BODY


def mini_s3_script(server: RawServer, wire: Wire, h: Head) -> bool:
    """Just enough S3 for one multipart upload (or a single PUT) through
    upload_file: parts kept in ``server.requests``, ETags = MD5s."""
    from urllib.parse import parse_qs, urlsplit

    body = read_body(server, wire, h)
    query = parse_qs(urlsplit(h.target).query, keep_blank_values=True)
    if h.method == "POST" and "uploads" in query:
        wire.answer(200, b"<InitiateMultipartUploadResult><UploadId>up1</UploadId>"
                         b"</InitiateMultipartUploadResult>")  # fmt: skip
    elif h.method == "POST" and "uploadId" in query:
        xml = b'<CompleteMultipartUploadResult><ETag>"x-1"</ETag></CompleteMultipartUploadResult>'
        wire.answer(200, xml)
    elif h.method == "PUT":
        etag = f'"{hashlib.md5(body).hexdigest()}"'.encode()
        head = [b"HTTP/1.1 200 OK", b"Content-Length: 0", b"ETag: " + etag]
        wire.sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
    else:
        wire.answer(204 if h.method == "DELETE" else 200)
    return True


@pytest.mark.parametrize("md5", [False, True])
async def test_upload_file_over_https_sends_regions(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    pki: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    part_buffers: list[int],
    md5: bool,
) -> None:
    """A byte-exact multipart upload over HTTPS, integrity off: every part is
    a file region read by its sending thread — no part buffer at all.  With
    the whole-file MD5 (the control) the parts are read into part buffers."""
    from aioims import UploadTarget
    from aioims.transfer import sender, upload_file

    regions: list[int] = []
    original = sender._send_file_slices

    def counting(conn: Any, job: Any) -> bool:
        regions.append(job.length)
        return original(conn, job)

    monkeypatch.setattr(sender, "_send_file_slices", counting)
    server = serve(mini_s3_script, tls=server_tls)
    data = os.urandom(13 * MiB + 5)
    path = tmp_path / "image.raw"
    path.write_bytes(data)
    target = UploadTarget(
        access_key="testing", secret_key="testing", bucket="bkt", file="img/a b.raw",
        domain=server.url,
    )  # fmt: skip
    config = TransferConfig(
        sender="thread", content_md5=False, payload_signing=False, part_size=5 * MiB,
        max_concurrency=2, ca_bundle=str(pki["ca"]),
    )  # fmt: skip
    result = await upload_file(target, path, config=config, md5=md5)
    assert result.size == len(data) and len(result.parts) == 3
    parts = {
        int(r.target.split("partNumber=")[1].split("&")[0]): r.body
        for r in server.requests
        if r.method == "PUT"
    }
    assert b"".join(parts[n] for n in sorted(parts)) == data
    if md5:
        assert result.md5 == hashlib.md5(data).hexdigest()
        assert regions == [] and part_buffers  # the control: the counter counts
    else:
        assert sorted(regions) == [3 * MiB + 5, 5 * MiB, 5 * MiB]
        assert part_buffers == []
