"""Performance tunings of the transfer engine found by the benchmarks
(docs/performance.md): lazily zero-filled part buffers, no CA bundle for
plain-http endpoints, and one cold S3 client at a time per event loop."""

from __future__ import annotations

import io
from typing import Any

import anyio
import pytest

from aioims.models.upload import UploadTarget
from aioims.transfer import TransferConfig
from aioims.transfer import s3 as s3_module
from aioims.transfer.hashing import new_part_buffer, read_body
from aioims.transfer.s3 import S3Clients, client_kwargs


def test_part_buffer_is_zeroed_owned_and_writable(tmp_path: Any) -> None:
    body = new_part_buffer(3 * 1024 * 1024)
    assert isinstance(body, io.BytesIO)
    assert body.tell() == 0
    assert body.seek(0, io.SEEK_END) == 3 * 1024 * 1024
    body.seek(0)
    with body.getbuffer() as view:
        assert not any(view[:4096]) and not any(view[-4096:])
        view[:5] = b"hello"
    assert body.read(5) == b"hello"
    assert new_part_buffer(0).getvalue() == b""

    source = tmp_path / "src.bin"
    source.write_bytes(bytes(range(256)) * 64)
    with source.open("rb") as f:
        filled = read_body(f.fileno(), 256, 1024, new_part_buffer(1024))
    assert filled.getvalue() == (bytes(range(256)) * 4)


def _target(domain: str) -> UploadTarget:
    return UploadTarget(access_key="AK", secret_key="SK", bucket="b", file="f", domain=domain)


def test_plain_http_endpoint_skips_certificate_setup() -> None:
    with_ca = TransferConfig(ca_bundle="/ca.pem")
    assert client_kwargs(_target("http://127.0.0.1:9000"), TransferConfig())["verify"] is False
    assert client_kwargs(_target("HTTP://10.0.0.5"), with_ca)["verify"] is False
    assert client_kwargs(_target("https://s3.example"), TransferConfig())["verify"] is True
    assert client_kwargs(_target("https://s3.example"), with_ca)["verify"] == "/ca.pem"
    assert client_kwargs(_target("s3.example"), TransferConfig())["verify"] is True  # https
    no_check = TransferConfig(verify_ssl=False)
    assert client_kwargs(_target("https://s3.example"), no_check)["verify"] is False


async def test_concurrent_transfers_build_one_session_and_one_cold_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = []
    events: list[tuple[str, int]] = []
    real_new_session = s3_module._new_session

    class Entered:
        """create_client's context manager, noting when entering starts/ends."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __aenter__(self) -> Any:
            events.append(("start", id(self)))
            try:
                return await self.inner.__aenter__()
            finally:
                events.append(("end", id(self)))

        async def __aexit__(self, *exc: Any) -> Any:
            return await self.inner.__aexit__(*exc)

    def counting_new_session() -> Any:
        built.append(1)
        session = real_new_session()
        real_create = session.create_client
        session.create_client = lambda *a, **kw: Entered(real_create(*a, **kw))
        return session

    monkeypatch.setattr(s3_module, "_new_session", counting_new_session)
    # on this loop (the transfer loop uses the same open_client, once per process)
    config = TransferConfig(offload_s3=False)
    clients = [
        S3Clients(_target("http://127.0.0.1:9"), config, None, lambda n: None) for _ in range(6)
    ]

    async def enter(c: S3Clients) -> None:
        async with c:
            assert c.client is not None

    async with anyio.create_task_group() as tg:
        for c in clients:
            tg.start_soon(enter, c)

    assert len(built) == 1  # one aiobotocore session for the loop
    assert len(events) == 12
    # the first (cold) client is created alone; the others after it
    assert events[0][0] == "start" and events[1] == ("end", events[0][1])
    assert s3_module._loop_shared().warm
