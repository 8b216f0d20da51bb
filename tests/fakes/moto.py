"""The suite's shared moto server (see ``tests/conftest.py``): restarted when
it died, recycled when it grew too big; and the per-test bucket clean-up."""

from __future__ import annotations

import contextlib
from typing import Any

from aioims.emulator.s3server import SyncS3Server, start_sync

MiB = 1024 * 1024
#: Most bytes a test may leave in its moto bucket (objects + pending parts).
MOTO_DATA_LIMIT = 64 * MiB
#: A moto server with a resident set above this is replaced after the test.
MOTO_RSS_LIMIT = 768 * MiB


def _rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class SharedMoto:
    """The suite's moto server, restarted when it died or grew too big."""

    def __init__(self) -> None:
        self.server: SyncS3Server | None = None
        self.starts = 0
        self._clients: dict[str, Any] = {}

    def get(self) -> SyncS3Server:
        server = self.server
        if server is None or server.process.poll() is not None:
            if server is not None:
                server.stop()
            self.server = server = start_sync()
            self.starts += 1
        return server

    def recycle_if_big(self) -> None:
        server = self.server
        if server is None:
            return
        rss = _rss(server.process.pid)
        if server.process.poll() is not None or (rss is not None and rss > MOTO_RSS_LIMIT):
            server.stop()
            self.server = None
            self._clients.pop(server.url, None)

    def boto3(self, url: str) -> Any:
        client = self._clients.get(url)
        if client is None:
            import boto3
            from botocore.config import Config

            client = self._clients[url] = boto3.client(
                "s3",
                endpoint_url=url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
                config=Config(
                    s3={"addressing_style": "path"},
                    retries={"total_max_attempts": 2, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                ),
            )
        return client

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._clients.clear()


def empty_bucket(client: Any, name: str) -> int:
    """Delete everything in bucket ``name``; return the bytes it held."""
    held = 0
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in page.get("Uploads", []):
            with contextlib.suppress(Exception):
                for parts in client.get_paginator("list_parts").paginate(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                ):
                    held += sum(p["Size"] for p in parts.get("Parts", []))
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
        for version in page.get("Versions", []) + page.get("DeleteMarkers", []):
            held += version.get("Size", 0)
            client.delete_object(Bucket=name, Key=version["Key"], VersionId=version["VersionId"])
    client.delete_bucket(Bucket=name)
    return held
