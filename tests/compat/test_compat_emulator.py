"""The emulator's end-to-end flow once with ``--s3-endpoint`` = radosgw:
create, upload-prepare (credentials of the emulator's S3 front, which
re-signs for radosgw), multipart transfer, done, verify, then a download
(Range requests) through the emulator; the object is checked on radosgw
with boto3."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
import pytest
from compat_servers import S3Server

from aioims import HeaderAuth, ImageSpec, IMSSession
from aioims.models import ImageStatus
from aioims.testing import REGION, start_emulator_process
from aioims.transfer import MiB, TransferConfig

# a real S3 server, seconds per test: the slow lane
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


async def test_emulator_flow_on_radosgw(rgw_http: S3Server, tmp_path: Path) -> None:
    args = [
        "--s3-endpoint", rgw_http.endpoint,
        "--s3-access-key", rgw_http.access_key,
        "--s3-secret-key", rgw_http.secret_key,
    ]  # fmt: skip
    with (tmp_path / "emulator.log").open("wb") as log:
        emulator = await anyio.to_thread.run_sync(
            lambda: start_emulator_process(tmp_path / "data", args=args, stderr=log)
        )
    try:
        source = tmp_path / "disk.qcow2"
        data = os.urandom(11 * MiB + 5)
        source.write_bytes(data)
        md5 = hashlib.md5(data).hexdigest()
        alice = emulator.user("alice")
        auth = HeaderAuth({"Authorization": f"Bearer {emulator.token('alice')}"})
        async with IMSSession(endpoint=emulator.url, region=REGION, auth=auth) as ims:
            spec = ImageSpec(
                name="rgw-flow",
                disk_format="qcow2",
                min_disk=10,
                tenant_id=alice["tenantId"],
                department_id=alice["departmentId"],
            )
            config = TransferConfig(part_size=5 * MiB, max_concurrency=2)
            image = await ims.upload_image(source, spec, config=config)
            assert image.status is ImageStatus.ACTIVE and image.checksum == md5

            # the object on radosgw, read with boto3
            admin = rgw_http.admin
            found = [
                (b["Name"], o["Key"])
                for b in admin.list_buckets()["Buckets"]
                for o in admin.list_objects_v2(Bucket=b["Name"], Prefix=image.image_id).get(
                    "Contents", []
                )
            ]
            assert len(found) == 1
            assert hashlib.md5(rgw_http.body(*found[0])).hexdigest() == md5
            assert rgw_http.uploads(found[0][0]) == []

            dest = tmp_path / "back.qcow2"
            written = await ims.download_private_image(image.image_id, dest)
            assert written == len(data) and dest.read_bytes() == data
    finally:
        emulator.stop()
