"""Session lifecycle, borrowed sessions, from_env, client-side validation and TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import ims_vendor_examples as ex
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ims_fake import REGION, TOKEN, FakeIMS

from aioims import (
    ConnectionFailedError,
    ExportBucket,
    HeaderAuth,
    IMSSession,
    RetryPolicy,
    ValidationError,
)

pytestmark = pytest.mark.timeout(30)

GET_PATH = "/images/img-kvvfk28fcjc0mt"

# --- lifecycle ------------------------------------------------------------------


async def test_owned_session_is_closed_on_exit(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    ims = IMSSession(fake.url, REGION)
    assert ims.closed
    async with ims:
        http = ims.http_session
        await ims.get_image("img-kvvfk28fcjc0mt")
        assert not http.closed
    assert http.closed and ims.closed
    with pytest.raises(RuntimeError, match="not open"):
        await ims.get_image("img-kvvfk28fcjc0mt")
    async with ims:  # can be reopened, with a fresh HTTP session
        assert ims.http_session is not http
        await ims.get_image("img-kvvfk28fcjc0mt")


async def test_borrowed_session_is_never_closed(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    async with aiohttp.ClientSession() as http:
        async with IMSSession(fake.url, REGION, session=http) as ims:
            assert ims.http_session is http
            await ims.get_image("img-kvvfk28fcjc0mt")
        assert ims.closed
        assert not http.closed
        async with http.get(fake.url + "/api/image/v1" + GET_PATH) as response:
            assert response.status == 200  # still usable
    assert len(fake.requests) == 2


async def test_nested_async_with_closes_at_the_outer_exit(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    ims = IMSSession(fake.url, REGION)
    async with ims:
        async with ims:
            await ims.get_image("img-kvvfk28fcjc0mt")
        assert not ims.closed
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert ims.closed


async def test_explicit_open_close(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    ims = await IMSSession(fake.url, REGION).open()
    try:
        await ims.get_image("img-kvvfk28fcjc0mt")
    finally:
        await ims.close()
    assert ims.closed


async def test_with_options_shares_the_http_session(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    async with IMSSession(fake.url, REGION, timeout=30) as ims:
        view = ims.with_options(timeout=3, retry=RetryPolicy.disabled())
        assert view.http_session is ims.http_session
        assert (view.timeout, ims.timeout) == (3, 30)
        async with view:  # entering/leaving a view does not close the session
            await view.get_image("img-kvvfk28fcjc0mt")
        assert not ims.closed and not ims.http_session.closed
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert view.closed


async def test_view_of_an_unopened_session_can_own_the_lifecycle(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    base = IMSSession(fake.url, REGION)
    async with base.with_options(timeout=5) as ims:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert ims.closed and base.closed


async def test_endpoint_with_api_prefix_and_trailing_slash(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    async with IMSSession(fake.url + "/api/image/v1/", REGION) as ims:
        assert ims.endpoint == fake.url + "/api/image/v1"
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert fake.requests[0].path == "/api/image/v1/images/img-kvvfk28fcjc0mt"


async def test_from_env(fake: FakeIMS) -> None:
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    env = {
        "IMS_ENDPOINT": fake.url,
        "IMS_REGION": "region9",
        "IMS_TOKEN": "tok-env",
        "IMS_TIMEOUT": "7.5",
        "IMS_MAX_ATTEMPTS": "5",
    }
    ims = IMSSession.from_env(env)
    assert ims.timeout == 7.5 and ims.retry.max_attempts == 5 and ims.region == "region9"
    assert "tok-env" not in repr(ims)
    async with ims:
        await ims.get_image("img-kvvfk28fcjc0mt")
    (req,) = fake.requests
    assert req.headers["Authorization"] == "Bearer tok-env"
    assert req.headers["x-regionid"] == "region9"


# --- validation: raised before anything is sent --------------------------------

CREATE: dict[str, Any] = dict(
    name="centos8.2", disk_format="qcow2", min_disk=10, min_ram=512, image_type="os_image",
    instruction="64-bits", cpu_arch="x86", os_type="linux", platform="CentOS",
    visibility="private", usage="ecs", department_id="7074631167051202560",
    tenant_id="7074631167042813952",
)  # fmt: skip
UPDATE: dict[str, Any] = dict(
    boot_mode="UEFI", cpu_arch="arm", disk_format="qcow2", instruction="64-bits", min_disk=20,
    min_ram=1024, name="test", os_type="linux", os_version="kylin-v10-sp3", platform="kylin",
)  # fmt: skip
IMPORT: dict[str, Any] = dict(
    name="n1", min_disk=1, min_ram=1, cpu_arch="x86", disk_format="raw", os_type="linux",
    os_version="v", platform="other", usage="ecs", instruction="64-bits", department_id="d",
    tenant_id="t", image_url="https://h/x",
)  # fmt: skip

Call = Callable[[IMSSession], Awaitable[Any]]


async def _drain(iterator: AsyncIterator[Any]) -> None:
    async for _ in iterator:
        pass


BAD_CALLS: dict[str, Call] = {
    "create: empty name": lambda s: s.create_private_image(**{**CREATE, "name": ""}),
    "create: 129-char name": lambda s: s.create_private_image(**{**CREATE, "name": "a" * 129}),
    "create: leading space": lambda s: s.create_private_image(**{**CREATE, "name": " web"}),
    "create: trailing space": lambda s: s.create_private_image(**{**CREATE, "name": "web "}),
    "create: bad char": lambda s: s.create_private_image(**{**CREATE, "name": "web/01"}),
    "create: emoji": lambda s: s.create_private_image(**{**CREATE, "name": "web🙂"}),
    "create: short description": lambda s: s.create_private_image(**CREATE, description="x"),
    "create: long description": lambda s: s.create_private_image(**CREATE, description="x" * 257),
    "create: unknown disk format": lambda s: s.create_private_image(
        **{**CREATE, "disk_format": "vmdk"}
    ),
    "create: unknown platform": lambda s: s.create_private_image(
        **{**CREATE, "platform": "debian"}
    ),
    "create: shared visibility": lambda s: s.create_private_image(
        **{**CREATE, "visibility": "shared"}
    ),
    "create: negative min_disk": lambda s: s.create_private_image(**{**CREATE, "min_disk": -1}),
    "create: negative min_ram": lambda s: s.create_private_image(**{**CREATE, "min_ram": -5}),
    "create: bool min_ram": lambda s: s.create_private_image(**{**CREATE, "min_ram": True}),
    "create: empty tenant": lambda s: s.create_private_image(**{**CREATE, "tenant_id": ""}),
    "create: bad boot mode": lambda s: s.create_private_image(**CREATE, boot_mode="legacy"),
    "create: bad instruction": lambda s: s.create_private_image(
        **{**CREATE, "instruction": "16-bits"}
    ),
    "update: bad os type": lambda s: s.update_private_image(
        "img-x", **{**UPDATE, "os_type": "beos"}
    ),
    "update: empty id": lambda s: s.update_private_image("", **UPDATE),
    "update: bad name": lambda s: s.update_private_image("img-x", **{**UPDATE, "name": "a|b"}),
    "import: not private": lambda s: s.import_image(**{**IMPORT, "visibility": "public"}),
    "import: bad usage": lambda s: s.import_image(**{**IMPORT, "usage": "gpu"}),
    "import: negative volume min_disk": lambda s: s.import_image(
        **IMPORT, volume_images=[{"imageUrl": "u", "minDisk": -1}]
    ),
    "import: empty url": lambda s: s.import_image(**{**IMPORT, "image_url": ""}),
    "get: empty id": lambda s: s.get_image(""),
    "get: blank id": lambda s: s.get_image("   "),
    "delete: empty id": lambda s: s.delete_private_image(""),
    "list: current 0": lambda s: s.list_images(current=0),
    "list: size 0": lambda s: s.list_images(size=0),
    "list private: negative size": lambda s: s.list_private_images(size=-1),
    "list private: bad filter": lambda s: s.list_private_images(filter=42),  # type: ignore[arg-type]
    "iter: page_size 0": lambda s: _drain(s.iter_images(page_size=0)),
    "iter shared: page_size 0": lambda s: _drain(s.iter_shared_images(page_size=0)),
    "shares: current 0": lambda s: s.list_image_shares("img-x", current=0),
    "prepare: negative size": lambda s: s.upload_prepare("img-x", size=-1),
    "done: bad result": lambda s: s.upload_done("img-x", result="ok"),
    "share: no users": lambda s: s.share_image("img-x", user_ids=[]),
    "share: 51 users": lambda s: s.share_image("img-x", user_ids=[str(i) for i in range(51)]),
    "share: duplicates": lambda s: s.share_image("img-x", user_ids=["1", "1"]),
    "share: empty id": lambda s: s.share_image("img-x", user_ids=["1", ""]),
    "share: a bare string": lambda s: s.share_image("img-x", user_ids="123"),
    "unshare: duplicates": lambda s: s.unshare_image("img-x", user_ids=["2", "2"]),
    "copy: bad name": lambda s: s.copy_shared_image(
        "img-share-x", tenant_id="t", department_id="d", resource_group_id="", name=" x"
    ),
    "copy: empty share id": lambda s: s.copy_shared_image(
        "", tenant_id="t", department_id="d", resource_group_id="", name="x"
    ),
    "delete shared: empty id": lambda s: s.delete_shared_image(""),
    "export: bucket without az": lambda s: s.export_image(
        "img-x", bucket=ExportBucket(name="b", az_id="", cell_id="c")
    ),
    "export: bucket not a mapping": lambda s: s.export_image("img-x", bucket="b"),  # type: ignore[arg-type]
    "download: bad dest": lambda s: s.download_private_image("img-x", 42),  # type: ignore[arg-type]
    "download: empty id": lambda s: s.download_private_image("", "/tmp/x"),
    "wait: unknown status": lambda s: s.wait_for_image("img-x", until="paused"),
    "wait: zero interval": lambda s: s.wait_for_image("img-x", interval=0),
    "per-call timeout 0": lambda s: s.get_image("img-x", timeout=0),
}


@pytest.mark.parametrize("call", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
async def test_validation_error_before_any_request(
    fake: FakeIMS, ims: IMSSession, call: Call
) -> None:
    with pytest.raises(ValidationError) as info:
        await call(ims)
    assert isinstance(info.value, ValueError)
    assert fake.requests == []


# --- TLS ---------------------------------------------------------------------------


def _make_pki(tmp: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aioims test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
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
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture
async def https_fake(tmp_path: Path) -> AsyncIterator[tuple[FakeIMS, str, Path]]:
    ca_path, cert_path, key_path = _make_pki(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    fake = FakeIMS()
    fake.on("GET", GET_PATH, ex.load(ex.GET_IMAGE))
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield fake, f"https://127.0.0.1:{port}", ca_path
    finally:
        fake.release.set()
        await runner.cleanup()


async def test_tls_verification_fails_without_the_ca(
    https_fake: tuple[FakeIMS, str, Path],
) -> None:
    fake, url, _ = https_fake
    async with IMSSession(url, REGION, retry=RetryPolicy(max_attempts=3)) as ims:
        with pytest.raises(ConnectionFailedError, match="TLS"):
            await ims.get_image("img-kvvfk28fcjc0mt")
    assert fake.requests == []


async def test_tls_with_the_ca_bundle(https_fake: tuple[FakeIMS, str, Path]) -> None:
    fake, url, ca_path = https_fake
    auth = HeaderAuth.bearer(TOKEN)
    async with IMSSession(url, REGION, auth=auth, ca_bundle=str(ca_path)) as ims:
        image = await ims.get_image("img-kvvfk28fcjc0mt")
    assert image.image_id == "img-kvvfk28fcjc0mt"
    assert fake.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_tls_ca_bundle_with_a_borrowed_session(
    https_fake: tuple[FakeIMS, str, Path],
) -> None:
    fake, url, ca_path = https_fake
    async with aiohttp.ClientSession() as http:
        async with IMSSession(url, REGION, session=http, ca_bundle=str(ca_path)) as ims:
            await ims.get_image("img-kvvfk28fcjc0mt")
        assert not http.closed
    assert len(fake.requests) == 1


async def test_tls_ca_bundle_from_env(https_fake: tuple[FakeIMS, str, Path]) -> None:
    fake, url, ca_path = https_fake
    env = {"IMS_ENDPOINT": url, "IMS_REGION": REGION, "IMS_CA_BUNDLE": str(ca_path)}
    async with IMSSession.from_env(env) as ims:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert len(fake.requests) == 1


async def test_tls_verification_can_be_turned_off(https_fake: tuple[FakeIMS, str, Path]) -> None:
    fake, url, _ = https_fake
    async with IMSSession.from_env(
        {"IMS_ENDPOINT": url, "IMS_REGION": REGION, "IMS_VERIFY_SSL": "false"}
    ) as ims:
        await ims.get_image("img-kvvfk28fcjc0mt")
    assert len(fake.requests) == 1


async def test_missing_ca_bundle_fails_on_enter(tmp_path: Path) -> None:
    ims = IMSSession("https://127.0.0.1:1", REGION, ca_bundle=str(tmp_path / "nope.pem"))
    with pytest.raises(ValidationError, match="CA bundle"):
        async with ims:
            pass
    assert ims.closed
