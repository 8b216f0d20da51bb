"""Parts sent as file regions (integrity off, the threaded sender) against
every S3 server of the suite: ``sendfile`` over plain HTTP, read slice by
slice by the sending thread over HTTPS (radosgw with a private CA).  What
landed is checked with boto3 as an independent client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from compat_servers import S3Server

from aioims.transfer import MiB, upload_file
from aioims.transfer import sender as sender_module

# a real S3 server, seconds per test: the slow lane
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


async def test_regions_are_byte_exact(
    s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: dict[str, list[int]] = {"sendfile": [], "slices": []}
    for name, path in (("sendfile", "_send_file"), ("slices", "_send_file_slices")):
        original = getattr(sender_module, path)

        def counting(conn: Any, job: Any, _original: Any = original, _name: str = name) -> bool:
            sent[_name].append(job.length)
            return bool(_original(conn, job))

        monkeypatch.setattr(sender_module, path, counting)
    data = os.urandom(11 * MiB + 3)
    (tmp_path / "disk.img").write_bytes(data)
    target = s3_server.target(bucket)
    config = s3_server.config(
        sender="thread", content_md5=False, payload_signing=False, max_concurrency=2
    )
    result = await upload_file(target, tmp_path / "disk.img", config=config, md5=False)
    assert result.size == len(data) and len(result.parts) == 3
    assert s3_server.body(bucket, target.file) == data
    assert s3_server.uploads(bucket) == []
    tls = target.domain.lower().startswith("https://")
    regions = sorted(sent["slices" if tls else "sendfile"])
    assert regions == [MiB + 3, 5 * MiB, 5 * MiB]
    assert sent["sendfile" if tls else "slices"] == []
