"""upload-prepare, upload-done and the streamed download."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path

import ims_vendor_examples as ex
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from ims_fake import TOKEN, FakeIMS, Reply, assert_common_headers

from aioims import (
    ChecksumMismatchError,
    ConnectionFailedError,
    DownloadNotAllowedError,
    IMSSession,
    NotFoundError,
    RequestTimeoutError,
    RetryPolicy,
    UploadResult,
    UploadTarget,
)

pytestmark = pytest.mark.timeout(30)

FILE_PATH = "/private-images/img-kvvfk28fcjc0mt/file"
BLOB = os.urandom(3 * 65536 + 123)


async def test_upload_prepare(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on(
        "POST", "/private-images/img-kvvfk28fcjc0mt/upload-prepare",
        ex.load(ex.UPLOAD_PREPARE_RESPONSE),
    )  # fmt: skip
    target = await ims.upload_prepare("img-kvvfk28fcjc0mt", size=104234)
    (req,) = fake.requests
    assert req.method == "POST"
    assert_common_headers(req)
    assert req.json == ex.load(ex.UPLOAD_PREPARE_REQUEST)
    assert isinstance(target, UploadTarget)
    assert target.access_key == "E8iGSz1FLwTsaIw9MAEh"
    assert target.secret_key == "R3rvxgFc1x9WkynfO4B8bYw6I78uYKtGgvdFanMk"
    assert target.token == ""
    assert target.bucket == "iaas-image-bc9ce42d2a804f718d3022797a5cc13a"
    assert target.file == "img-xs6oaf7h9kvxr"
    assert target.domain == "https://10.253.101.4:8009"
    assert "R3rvxgFc1x9WkynfO4B8bYw6I78uYKtGgvdFanMk" not in repr(target)


async def test_upload_prepare_is_retried(fake: FakeIMS, ims: IMSSession) -> None:
    path = "/private-images/img-kvvfk28fcjc0mt/upload-prepare"
    fake.on(
        "POST", path, Reply(ex.error_envelope("IMG.DBUpdate.Fail"), status=400),
        ex.load(ex.UPLOAD_PREPARE_RESPONSE),
    )  # fmt: skip
    await ims.upload_prepare("img-kvvfk28fcjc0mt", size=1)
    assert len(fake.requests) == 2


async def test_upload_prepare_never_logs_secrets(
    fake: FakeIMS, ims: IMSSession, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/private-images/img-kvvfk28fcjc0mt/upload-prepare"
    payload = ex.load(ex.UPLOAD_PREPARE_RESPONSE)
    payload["data"]["token"] = "SESSION-TOKEN-SECRET"
    fake.on("POST", path, Reply(ex.error_envelope("IMG.Internal.Error"), status=400), payload)
    caplog.set_level(logging.DEBUG, logger="aioims")
    target = await ims.upload_prepare("img-kvvfk28fcjc0mt", size=1)
    text = caplog.text
    assert "POST" in text and path in text
    assert "attempt=1" in text and "attempt=2" in text
    assert "342ac6aa-d4c3-4d2e-a4e0-8ede367e359e" in text  # requestId
    assert "req-err-1" in text  # the failed attempt's requestId
    for secret in (target.secret_key, "SESSION-TOKEN-SECRET", TOKEN):
        assert secret not in text


@pytest.mark.parametrize(
    ("result", "upload_id", "body"),
    [
        ("success", "test", ex.load(ex.UPLOAD_DONE_REQUEST)),
        (UploadResult.FAILED, None, {"result": "failed"}),
        ("SUCCESS", "", {"result": "success", "uploadId": ""}),
    ],
)
async def test_upload_done(
    fake: FakeIMS, ims: IMSSession, result: str, upload_id: str | None, body: dict[str, str]
) -> None:
    fake.on(
        "POST", "/private-images/img-kvvfk28fcjc0mt/upload-done",
        ex.load(ex.UPLOAD_DONE_RESPONSE),
    )  # fmt: skip
    assert await ims.upload_done("img-kvvfk28fcjc0mt", result=result, upload_id=upload_id) is None
    (req,) = fake.requests
    assert_common_headers(req)
    assert req.json == body


# --- download ---------------------------------------------------------------
# verify=False: the plain streaming path (no get_image first); the verified
# and resumable variants are tested further down.


def _blob_handler(
    fake: FakeIMS,
    dest: Path | None = None,
    chunk: int = 65536,
    seen: list[tuple[bool, bool]] | None = None,
):
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(BLOB)
        await response.prepare(request)
        for offset in range(0, len(BLOB), chunk):
            await response.write(BLOB[offset : offset + chunk])
            if dest is not None and seen is not None and offset >= chunk:
                # Mid-transfer: where is the data going?  Wait (bounded) for
                # the client to have written something, then look.
                part = dest.with_name(dest.name + ".part")
                for _ in range(500):
                    if part.exists() and part.stat().st_size > 0:
                        break
                    await fake.sleep(0.01)
                seen.append((dest.exists(), part.exists()))
        await response.write_eof()
        return response

    return handler


async def test_download_to_path(fake: FakeIMS, ims: IMSSession, tmp_path: Path) -> None:
    dest = tmp_path / "image.qcow2"
    seen: list[tuple[bool, bool]] = []
    fake.on("GET", FILE_PATH, _blob_handler(fake, dest, seen=seen))
    written = await ims.download_private_image(
        "img-kvvfk28fcjc0mt", dest, chunk_size=4096, verify=False
    )
    assert written == len(BLOB)
    assert dest.read_bytes() == BLOB
    assert not (tmp_path / "image.qcow2.part").exists()
    # While bytes were flowing: no file under the final name, only <dest>.part.
    assert seen and set(seen) == {(False, True)}
    (req,) = fake.requests
    assert req.method == "GET"
    assert_common_headers(req)


async def test_download_to_str_path_replaces_existing(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    dest = tmp_path / "old.raw"
    dest.write_bytes(b"old content")
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    assert await ims.download_private_image("img-kvvfk28fcjc0mt", str(dest), verify=False) == len(
        BLOB
    )
    assert hashlib.md5(dest.read_bytes()).digest() == hashlib.md5(BLOB).digest()


async def test_download_to_file_object(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    buffer = io.BytesIO()
    written = await ims.download_private_image(
        "img-kvvfk28fcjc0mt", buffer, chunk_size=1000, verify=False
    )
    assert written == len(BLOB)
    assert buffer.getvalue() == BLOB


async def test_download_to_async_writer(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    chunks: list[bytes] = []

    class AsyncSink:
        async def write(self, data: bytes) -> None:
            assert len(data) <= 1000  # bounded chunks
            chunks.append(data)

    await ims.download_private_image(
        "img-kvvfk28fcjc0mt", AsyncSink(), chunk_size=1000, verify=False
    )
    assert b"".join(chunks) == BLOB


@pytest.mark.parametrize("status", [400, 200])
@pytest.mark.parametrize(
    "code", ["IMG.OperationFailed.DownloadNotAllowed", "IMG.OperationFailed.DownloadNotallowed"]
)
async def test_download_error_envelope_leaves_no_file(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path, status: int, code: str
) -> None:
    fake.on("GET", FILE_PATH, Reply(ex.error_envelope(code, "当前镜像不允许下载"), status=status))
    dest = tmp_path / "image.qcow2"
    with pytest.raises(DownloadNotAllowedError) as info:
        await ims.download_private_image("img-kvvfk28fcjc0mt", dest, verify=False)
    assert info.value.code == code
    assert info.value.http_status == status
    assert info.value.request_id == "req-err-1"
    assert list(tmp_path.iterdir()) == []


async def test_download_not_found_to_file_object(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", FILE_PATH, Reply(ex.error_envelope("IMG.DBGet.NoData"), status=400))
    buffer = io.BytesIO()
    with pytest.raises(NotFoundError):
        await ims.download_private_image("img-kvvfk28fcjc0mt", buffer, verify=False)
    assert buffer.getvalue() == b""


async def test_download_truncated_body_leaves_no_file(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(BLOB)
        await response.prepare(request)
        await response.write(BLOB[: len(BLOB) // 2])
        assert request.transport is not None
        request.transport.close()  # the connection dies mid-body
        return response

    fake.on("GET", FILE_PATH, truncated)
    dest = tmp_path / "image.qcow2"
    with pytest.raises(ConnectionFailedError):
        await ims.download_private_image("img-kvvfk28fcjc0mt", dest, verify=False)
    assert not dest.exists()
    assert not dest.with_name("image.qcow2.part").exists()


async def test_download_stalled_body_times_out(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    async def stalled(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(BLOB)
        await response.prepare(request)
        await response.write(BLOB[:1000])
        await fake.sleep(10)
        return response

    fake.on("GET", FILE_PATH, stalled)
    dest = tmp_path / "image.qcow2"
    with pytest.raises(RequestTimeoutError):
        await ims.download_private_image("img-kvvfk28fcjc0mt", dest, timeout=0.3, verify=False)
    assert list(tmp_path.iterdir()) == []


async def test_download_retries_transient_before_the_body(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    fake.on(
        "GET", FILE_PATH,
        Reply(body=b"<html>bad gateway</html>", status=502, content_type="text/html"),
        _blob_handler(fake),
    )  # fmt: skip
    assert await ims.download_private_image(
        "img-kvvfk28fcjc0mt", tmp_path / "f", verify=False
    ) == len(BLOB)
    assert len(fake.requests) == 2


async def test_download_follows_same_origin_redirect(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    fake.on("GET", FILE_PATH, Reply(status=302, body=b"", headers={"Location": "/blobs/x?sig=1"}))
    fake.on("GET", "//blobs/x", _blob_handler(fake))
    assert await ims.download_private_image(
        "img-kvvfk28fcjc0mt", tmp_path / "f", verify=False
    ) == len(BLOB)
    _, second = fake.requests
    assert second.path == "/blobs/x" and second.query == {"sig": "1"}
    assert second.headers["Authorization"] == f"Bearer {TOKEN}"  # same origin keeps auth


async def test_download_cross_origin_redirect_drops_credentials(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    storage = FakeIMS()
    storage.on("GET", "//bucket/img", _blob_handler(storage))
    storage.server = TestServer(storage.app, host="127.0.0.1", port=0)
    await storage.server.start_server()
    try:
        fake.on(
            "GET", FILE_PATH,
            Reply(status=307, body=b"", headers={"Location": f"{storage.url}/bucket/img"}),
        )  # fmt: skip
        dest = tmp_path / "f"
        assert await ims.download_private_image("img-kvvfk28fcjc0mt", dest, verify=False) == len(
            BLOB
        )
        assert dest.read_bytes() == BLOB
        (req,) = storage.requests
        assert "Authorization" not in req.headers
        assert "x-regionid" not in req.headers
    finally:
        storage.release.set()
        await storage.server.close()


async def test_stream_supports_range_for_resume(fake: FakeIMS, ims: IMSSession) -> None:
    """The hook the resumable downloader builds on: ``_stream`` with Range/206."""

    async def ranged(request: web.Request) -> web.StreamResponse:
        start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
        return web.Response(
            status=206,
            body=BLOB[start:],
            headers={"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"},
            content_type="application/octet-stream",
        )

    fake.on("GET", FILE_PATH, ranged)
    async with ims._stream("GET", FILE_PATH, headers={"Range": "bytes=100-"}) as response:
        assert response.status == 206
        data = b"".join([c async for c in response.iter_chunks(4096)])
    assert data == BLOB[100:]


async def test_download_not_retried_when_disabled(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    fake.on("GET", FILE_PATH, Reply(body=b"oops", status=503, content_type="text/plain"))
    from aioims import ServerHTTPError

    with pytest.raises(ServerHTTPError):
        await ims.download_private_image(
            "img-kvvfk28fcjc0mt", tmp_path / "f", verify=False, retry=RetryPolicy.disabled()
        )
    assert len(fake.requests) == 1


# --- resume / verify / progress (delegated to aioims.transfer.download) -----------


def _active_image_of_blob() -> dict[str, object]:
    payload = ex.load(ex.GET_IMAGE)
    payload["data"].update(size=len(BLOB), checksum=hashlib.md5(BLOB).hexdigest())
    return payload


async def test_download_verified(fake: FakeIMS, ims: IMSSession, tmp_path: Path) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", _active_image_of_blob())
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    events: list[object] = []
    dest = tmp_path / "v.qcow2"
    written = await ims.download_private_image(
        "img-kvvfk28fcjc0mt", dest, verify=True, progress=events.append
    )
    assert written == len(BLOB) and dest.read_bytes() == BLOB
    assert [r.path.rsplit("/", 1)[-1] for r in fake.requests] == ["img-kvvfk28fcjc0mt", "file"]
    assert events  # progress events were delivered


async def test_download_resumes_a_part_file(fake: FakeIMS, ims: IMSSession, tmp_path: Path) -> None:
    async def ranged(request: web.Request) -> web.StreamResponse:
        start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
        return web.Response(
            status=206,
            body=BLOB[start:],
            headers={"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"},
            content_type="application/octet-stream",
        )

    fake.on("GET", "/images/img-kvvfk28fcjc0mt", _active_image_of_blob())
    fake.on("GET", FILE_PATH, ranged)
    dest = tmp_path / "r.qcow2"
    (tmp_path / "r.qcow2.part").write_bytes(BLOB[:5000])
    assert await ims.download_private_image("img-kvvfk28fcjc0mt", dest, resume=True) == len(BLOB)
    assert dest.read_bytes() == BLOB
    assert fake.calls("GET", FILE_PATH)[0].headers["Range"] == "bytes=5000-"


async def test_download_options_need_a_path(fake: FakeIMS, ims: IMSSession) -> None:
    from aioims import ValidationError

    with pytest.raises(ValidationError):
        await ims.download_private_image("img-kvvfk28fcjc0mt", io.BytesIO(), resume=True)
    with pytest.raises(ValidationError):
        await ims.download_private_image("img-kvvfk28fcjc0mt", io.BytesIO(), progress=print)
    assert fake.requests == []


async def test_download_to_file_object_verified(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", _active_image_of_blob())
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    buffer = io.BytesIO()
    assert await ims.download_private_image("img-kvvfk28fcjc0mt", buffer) == len(BLOB)
    assert buffer.getvalue() == BLOB
    assert len(fake.requests) == 2


async def test_download_to_async_writer_verified(fake: FakeIMS, ims: IMSSession) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", _active_image_of_blob())
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    chunks: list[bytes] = []

    class AsyncSink:
        async def write(self, data: bytes) -> None:
            chunks.append(data)

    await ims.download_private_image("img-kvvfk28fcjc0mt", AsyncSink())
    assert b"".join(chunks) == BLOB


async def test_download_to_file_object_checksum_mismatch(fake: FakeIMS, ims: IMSSession) -> None:
    image = _active_image_of_blob()
    image["data"]["checksum"] = "0" * 32  # type: ignore[index]
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", image)
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    with pytest.raises(ChecksumMismatchError) as info:
        await ims.download_private_image("img-kvvfk28fcjc0mt", io.BytesIO())
    assert info.value.expected == "0" * 32
    assert info.value.actual == hashlib.md5(BLOB).hexdigest()


async def test_download_to_file_object_size_mismatch(fake: FakeIMS, ims: IMSSession) -> None:
    image = _active_image_of_blob()
    image["data"]["size"] = len(BLOB) + 1  # type: ignore[index]
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", image)
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    with pytest.raises(ConnectionFailedError, match="bytes"):
        await ims.download_private_image("img-kvvfk28fcjc0mt", io.BytesIO())


async def test_download_verify_skipped_until_active(fake: FakeIMS, ims: IMSSession) -> None:
    image = _active_image_of_blob()
    image["data"].update(status="saving", checksum="0" * 32)  # type: ignore[attr-defined]
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", image)
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    buffer = io.BytesIO()
    assert await ims.download_private_image("img-kvvfk28fcjc0mt", buffer) == len(BLOB)


# --- the one download primitive: open_image_file ---------------------------------


async def test_open_image_file_skips_the_head_when_range_is_ignored(
    fake: FakeIMS, ims: IMSSession
) -> None:
    """One range policy for every reader: a 200 to a Range request is read
    from the start and the head skipped here."""
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    async with ims.open_image_file("img-kvvfk28fcjc0mt", 1000) as file:
        assert not file.range_honoured
        data = b"".join([c async for c in file.chunks(4096)])
    assert data == BLOB[1000:]
    assert fake.calls("GET", FILE_PATH)[0].headers["Range"] == "bytes=1000-"


async def test_open_image_file_checks_content_range(fake: FakeIMS, ims: IMSSession) -> None:
    from aioims import ConnectionFailedError

    async def wrong(request: web.Request) -> web.StreamResponse:
        return web.Response(status=206, body=BLOB[5:], content_type="application/octet-stream",
                            headers={"Content-Range": f"bytes 5-{len(BLOB) - 1}/{len(BLOB)}"})

    fake.on("GET", FILE_PATH, wrong)
    with pytest.raises(ConnectionFailedError, match="Content-Range"):
        async with ims.open_image_file("img-kvvfk28fcjc0mt", 100):
            pass


async def test_resume_against_a_server_ignoring_range_appends_the_rest(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    fake.on("GET", "/images/img-kvvfk28fcjc0mt", _active_image_of_blob())
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    dest = tmp_path / "r.qcow2"
    (tmp_path / "r.qcow2.part").write_bytes(BLOB[:5000])
    assert await ims.download_private_image("img-kvvfk28fcjc0mt", dest, resume=True) == len(BLOB)
    assert dest.read_bytes() == BLOB


async def test_download_refuses_a_symlinked_part_file(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    """``<dest>.part`` is opened with O_NOFOLLOW: a symlink planted there is an
    error, and its target is left untouched."""
    from aioims import ValidationError

    fake.on("GET", FILE_PATH, _blob_handler(fake))
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dest = tmp_path / "image.raw"
    link = tmp_path / "image.raw.part"
    for resume in (False, True):
        link.unlink(missing_ok=True)
        link.symlink_to(victim)
        with pytest.raises(ValidationError, match="symbolic link"):
            await ims.download_private_image(
                "img-kvvfk28fcjc0mt", dest, verify=False, resume=resume, progress=lambda e: None
            )
    assert victim.read_bytes() == b"precious" and not dest.exists()


async def test_downloaded_file_mode_follows_the_umask(
    fake: FakeIMS, ims: IMSSession, tmp_path: Path
) -> None:
    fake.on("GET", FILE_PATH, _blob_handler(fake))
    dest = tmp_path / "image.raw"
    old = os.umask(0o022)
    try:
        await ims.download_private_image("img-kvvfk28fcjc0mt", dest, verify=False)
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o644
