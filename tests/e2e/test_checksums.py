"""Per-part CRC32C on real HTTP: moto (which accepts ``ChecksumAlgorithm`` and
``ChecksumCRC32C`` but checks neither, like Ceph before Squid) directly and
through the emulator's S3 front with scoped upload credentials (the policy
of an ``upload-prepare``: no DeleteObject).  The protocol's rules themselves
(AWS's refusals) are tested on FakeS3 in ``tests/unit/test_driver_rules.py``."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aioims import UploadTarget, hooks
from aioims.emulator.s3front import S3Front
from aioims.emulator.s3policy import UploadScope
from aioims.testing import ims, ims_emulator  # noqa: F401 - fixtures
from aioims.transfer import MiB, TransferConfig, checksums, upload_file

pytestmark = pytest.mark.timeout(120)


def cfg(**kw: Any) -> TransferConfig:
    return TransferConfig(part_size=5 * MiB, max_concurrency=2, **kw)


@pytest.fixture(autouse=True)
def no_probe_cache() -> Iterator[None]:
    checksums.forget_probes()
    yield
    checksums.forget_probes()


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, str]:
    data = os.urandom(12 * MiB + 5)  # 3 parts
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path, hashlib.md5(data).hexdigest()


@pytest.fixture
async def front(s3_url: str) -> AsyncIterator[S3Front]:
    async with S3Front(upstream=s3_url) as proxy:
        yield proxy


def moto_target(s3_url: str, bucket: str, key: str) -> UploadTarget:
    return UploadTarget(bucket=bucket, file=key, domain=s3_url, access_key="testing",
                        secret_key="testing")  # fmt: skip


def scoped_target(front: S3Front, bucket: str, key: str) -> UploadTarget:
    """Credentials as the emulator's upload-prepare issues them: this object only."""
    creds = front.issue_credentials(3600.0, scope=UploadScope(bucket, key))
    return UploadTarget(
        bucket=bucket, file=key, domain=front.url, access_key=creds.access_key,
        secret_key=creds.secret_key, token=creds.token, expires_at=creds.expires_at,
    )  # fmt: skip


def stored(boto3_s3: Any, bucket: str, key: str) -> tuple[str, dict[str, Any]]:
    body = boto3_s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    head = boto3_s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return hashlib.md5(body).hexdigest(), head


async def test_crc32c_multipart_upload_on_moto(
    s3_url: str, bucket: str, boto3_s3: Any, image: tuple[Path, str]
) -> None:
    """moto takes the whole protocol: the declared algorithm (it reports a
    CRC32C for the object, which only a declared upload gets) and Complete
    with every part's ChecksumCRC32C."""
    path, md5 = image
    key = f"img-{uuid.uuid4().hex[:8]}"
    result = await upload_file(moto_target(s3_url, bucket, key), path,
                               config=cfg(part_checksum="crc32c"))  # fmt: skip
    assert result.md5 == md5 and len(result.parts) == 3
    assert all(p.checksum_crc32c for p in result.parts)
    got, head = stored(boto3_s3, bucket, key)
    assert got == md5 and head["ETag"] == result.etag and head.get("ChecksumCRC32C")


async def test_crc32c_resume_on_moto_takes_the_crcs_from_the_journal(
    s3_url: str, bucket: str, boto3_s3: Any, image: tuple[Path, str], tmp_path: Path
) -> None:
    """moto's ListParts reports neither the algorithm nor part CRC32Cs: the
    journal supplies both, nothing is sent again."""
    path, md5 = image
    key = f"img-{uuid.uuid4().hex[:8]}"
    target, cp = moto_target(s3_url, bucket, key), tmp_path / "cp.json"
    sent: list[int] = []

    async def hook(name: str, info: dict[str, Any]) -> None:
        if name == "part:after":
            sent.append(info["part_number"])
        if name == "complete:before" and crash:
            raise Crash  # like a cancellation: the journal keeps the upload

    crash = True
    with hooks.installed(hook):
        try:
            await upload_file(target, path, config=cfg(part_checksum="crc32c"), checkpoint=cp)
        except BaseException as exc:
            if not _has_crash(exc):
                raise
    assert sorted(sent) == [1, 2, 3] and cp.exists()
    [upload] = boto3_s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert upload["ChecksumAlgorithm"] == "CRC32C"
    sent.clear()
    crash = False
    with hooks.installed(hook):  # resumed by a run configured for Content-MD5
        result = await upload_file(target, path, config=cfg(part_checksum="md5"), checkpoint=cp)
    assert result.md5 == md5 and result.resumed_parts == 3 and sent == []
    assert all(p.checksum_crc32c for p in result.parts)
    got, head = stored(boto3_s3, bucket, key)
    assert got == md5 and head.get("ChecksumCRC32C")


class Crash(BaseException):
    pass


def _has_crash(exc: BaseException) -> bool:
    if isinstance(exc, Crash):
        return True
    inner = getattr(exc, "exceptions", None)
    return inner is not None and any(_has_crash(e) for e in inner)


async def test_auto_probe_on_moto(
    s3_url: str, bucket: str, boto3_s3: Any, image: tuple[Path, str]
) -> None:
    """moto ignores x-amz-checksum-crc32c: the probe says so (cached for the
    endpoint), the parts carry Content-MD5, the upload overwrites the probe
    object."""
    path, md5 = image
    key = f"img-{uuid.uuid4().hex[:8]}"
    result = await upload_file(moto_target(s3_url, bucket, key), path,
                               config=cfg(part_checksum="auto"))  # fmt: skip
    assert result.md5 == md5
    assert checksums.cached_probe(s3_url) is False
    assert all(p.checksum_crc32c is None for p in result.parts)
    got, head = stored(boto3_s3, bucket, key)
    assert got == md5 and head["ContentLength"] == path.stat().st_size
    assert "ChecksumCRC32C" not in head  # created without ChecksumAlgorithm


@pytest.mark.parametrize("kind", ["auto", "crc32c"])
async def test_through_the_s3_front_with_scoped_credentials(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, str], kind: str
) -> None:
    """Upload credentials may PutObject their key but not delete: the probe
    (a PutObject) works with them and nothing tries to delete."""
    path, md5 = image
    key = f"img-{uuid.uuid4().hex[:8]}"
    result = await upload_file(scoped_target(front, bucket, key), path,
                               config=cfg(part_checksum=kind))  # fmt: skip
    assert result.md5 == md5
    assert front.stats.count("PutObject") == (1 if kind == "auto" else 0)
    assert front.stats.count("DeleteObject") == 0 and not front.stats.rejected
    if kind == "auto":
        assert checksums.cached_probe(front.url) is False
    got, head = stored(boto3_s3, bucket, key)
    assert got == md5
    # declared CRC32C (moto then reports a CRC32C for the object) only for "crc32c"
    assert bool(head.get("ChecksumCRC32C")) is (kind == "crc32c")
    assert not boto3_s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


async def test_auto_probe_for_a_single_put_through_the_front(
    front: S3Front, bucket: str, boto3_s3: Any, tmp_path: Path
) -> None:
    """A small file (one PutObject): the probe, then the object itself."""
    data = os.urandom(1000)
    path = tmp_path / "small.img"
    path.write_bytes(data)
    key = f"img-{uuid.uuid4().hex[:8]}"
    result = await upload_file(scoped_target(front, bucket, key), path,
                               config=cfg(part_checksum="auto"))  # fmt: skip
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert front.stats.count("PutObject") == 2 and front.stats.count("DeleteObject") == 0
    assert boto3_s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


async def test_auto_through_the_emulator_upload_image(
    ims: Any, ims_emulator: Any, image: tuple[Path, str]
) -> None:
    """The whole flow (upload-prepare's scoped credentials, the S3 front, the
    emulator's MD5 check at upload-done) with ``part_checksum="auto"``."""
    from aioims import ImageSpec, ImageStatus

    path, md5 = image
    alice = ims_emulator.user("alice")
    spec = ImageSpec(name="crc-auto", disk_format="raw", min_disk=1,
                     department_id=alice["departmentId"], tenant_id=alice["tenantId"])  # fmt: skip
    image_ = await ims.upload_image(path, spec, config=cfg(part_checksum="auto"))
    assert image_.status is ImageStatus.ACTIVE and image_.checksum == md5
    state = ims_emulator.state()
    assert state["s3Front"]  # uploads went through the front, with scoped credentials
    # the probe answered clearly (moto behind the front ignores CRC32C)
    assert checksums.cached_probe(str(state["uploadDomain"]).rstrip("/")) is False
