"""Shared fixtures: a real S3 server (moto, server mode, free loopback port)
and an independent boto3 client to check what landed in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aioims.emulator.s3server import SyncS3Server, start_sync


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SyncS3Server]:
    server = start_sync()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_url(s3_server: SyncS3Server) -> str:
    return s3_server.url


@pytest.fixture(scope="session")
def boto3_s3(s3_url: str) -> Any:
    """An independent S3 client (boto3, not aiobotocore) on the moto server."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(boto3_s3: Any) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3_s3.create_bucket(Bucket=name)
    return name
