"""What the compatibility tests share: :class:`S3Server` (one S3 server of
the suite and how to use it) and :class:`Refresher` (a ``refresh``
callable backed by STS).  The fixtures are in ``conftest.py``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import attrs

from aioims import UploadTarget
from aioims.transfer import MiB, TransferConfig

REPO = Path(__file__).resolve().parents[2]
RGW_SCRIPTS = REPO.parent / "shared" / "s3-servers" / "ceph-rgw"
SERVERS = ["moto", "rgw-http", "rgw-https"]
#: buckets made by the running test (removed at its teardown)
CREATED: list[tuple[S3Server, str]] = []


@attrs.define
class S3Server:
    """One S3 server of the suite and what a test needs to use it."""

    name: str  # "moto", "rgw-http", "rgw-https"
    kind: str  # "moto" or "radosgw"
    endpoint: str
    access_key: str
    secret_key: str
    role_arn: str
    ca_bundle: str | None = None
    version: str = ""
    admin: Any = None  # boto3 S3 client with the static keys (an independent client)
    sts: Any = None

    @property
    def real_expiry(self) -> bool:
        """Does the server refuse lapsed session credentials? (moto does not.)"""
        return self.kind == "radosgw"

    def config(self, **kw: Any) -> TransferConfig:
        """The suite's transfer config: 5 MiB parts, fast backoff, the CA."""
        options: dict[str, Any] = {
            "part_size": 5 * MiB,
            "multipart_threshold": 5 * MiB,
            "max_concurrency": 4,
            "backoff_base": 0.01,
            "checkpoint_interval": 0.05,
        }
        if self.ca_bundle:
            options["ca_bundle"] = self.ca_bundle
        options.update(kw)
        return TransferConfig(**options)

    def new_bucket(self) -> str:
        """A fresh bucket, emptied and removed after the test (``conftest``)."""
        name = f"compat-{uuid.uuid4().hex[:16]}"
        self.admin.create_bucket(Bucket=name)
        CREATED.append((self, name))
        return name

    def remove_bucket(self, name: str) -> None:
        """Abort its uploads, delete its objects and the bucket."""
        admin = self.admin
        for upload in admin.list_multipart_uploads(Bucket=name).get("Uploads", []):
            admin.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for page in admin.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                admin.delete_object(Bucket=name, Key=item["Key"])
        admin.delete_bucket(Bucket=name)

    def session_credentials(self, seconds: int = 900) -> dict[str, Any]:
        """STS AssumeRole at the S3 endpoint: key, secret, session token."""
        answer = self.sts.assume_role(
            RoleArn=self.role_arn,
            RoleSessionName=f"aioims-{uuid.uuid4().hex[:8]}",
            DurationSeconds=seconds,
        )
        creds: dict[str, Any] = answer["Credentials"]
        return creds

    def target(
        self,
        bucket: str,
        key: str | None = None,
        *,
        seconds: int = 900,
        with_expiry: bool = False,
        creds: dict[str, Any] | None = None,
    ) -> UploadTarget:
        """An upload target with fresh session credentials (``expires_at`` from
        STS when ``with_expiry``, else unknown as in the vendor payload)."""
        creds = creds if creds is not None else self.session_credentials(seconds)
        return UploadTarget(
            access_key=creds["AccessKeyId"],
            secret_key=creds["SecretAccessKey"],
            token=creds["SessionToken"],
            bucket=bucket,
            file=key if key is not None else f"img-{uuid.uuid4().hex[:8]}",
            domain=self.endpoint,
            expires_at=expiration(creds) if with_expiry else None,
        )

    def refresher(
        self, like: UploadTarget, *, seconds: int = 900, with_expiry: bool = False
    ) -> Refresher:
        return Refresher(self, like, seconds, with_expiry)

    def uploads(self, bucket: str) -> list[str]:
        answer = self.admin.list_multipart_uploads(Bucket=bucket)
        return [u["UploadId"] for u in answer.get("Uploads", [])]

    def body(self, bucket: str, key: str) -> bytes:
        data: bytes = self.admin.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            answer: dict[str, Any] = self.admin.head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        return answer


def expiration(creds: dict[str, Any]) -> datetime:
    value = creds["Expiration"]
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@attrs.define
class Refresher:
    """A ``refresh`` callable: new session credentials for the same object,
    from STS (in a worker thread); records when it was called."""

    server: S3Server
    like: UploadTarget
    seconds: int
    with_expiry: bool
    calls: list[float] = attrs.field(factory=list)
    #: for each call: were the previous credentials already expired?
    after_expiry: list[bool] = attrs.field(factory=list)
    fail: BaseException | None = None
    hook: Callable[[], Awaitable[None]] | None = None
    current: UploadTarget | None = None

    async def __call__(self) -> UploadTarget:
        self.calls.append(time.monotonic())
        previous = self.current or self.like
        self.after_expiry.append(
            previous.expires_at is not None and previous.expires_at <= datetime.now(timezone.utc)
        )
        if self.hook is not None:
            await self.hook()
        if self.fail is not None:
            raise self.fail
        creds = await anyio.to_thread.run_sync(self.server.session_credentials, self.seconds)
        self.current = self.server.target(
            self.like.bucket, self.like.file, with_expiry=self.with_expiry, creds=creds
        )
        return self.current
