"""The S3 backend: image files live in an S3-compatible server (the embedded
moto, or an external one), reached with aiobotocore's public client API.

Buckets: one per tenant, ``iaas-image-<32 hex>`` (created on demand, derived
from the tenant id so it is stable across restarts), and two export buckets
per tenant, ``ims-export-<16 hex>-1`` and ``-2``.  Hashing runs in worker
threads on bounded chunks; nothing is ever buffered whole.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import attrs
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

CHUNK = 1024 * 1024
HASH_BATCH = 8 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
COPY_LIMIT = 5 * 1024**3
COPY_PART = 1024**3
_MISSING = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


def is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


def _hex(prefix: str, tenant_id: str, length: int) -> str:
    return hashlib.sha256(f"{prefix}:{tenant_id}".encode()).hexdigest()[:length]


class Hasher:
    """MD5 over a byte stream, fed in batches of at most :data:`HASH_BATCH`
    bytes and computed in a worker thread."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5()  # noqa: S324 - MD5 is the vendor's checksum
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.size = 0

    async def feed(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        self.size += len(chunk)
        if self._pending_size >= HASH_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending, self._pending_size = self._pending, [], 0
        if batch:
            await anyio.to_thread.run_sync(_update_all, self._md5, batch)

    async def hexdigest(self) -> str:
        await self._flush()
        return self._md5.hexdigest()


def _update_all(md5: Any, batch: list[bytes]) -> None:
    for chunk in batch:
        md5.update(chunk)


@attrs.define
class ObjectStream:
    """An open ``GetObject`` answer."""

    content_length: int
    total_size: int
    _body: Any

    async def chunks(self, size: int = CHUNK) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._body.read(size)
            if not chunk:
                return
            yield chunk


class Storage:
    """aiobotocore S3 client on the backing server (path-style addressing)."""

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1"
    ) -> None:
        self.endpoint = endpoint
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._known_buckets: set[str] = set()

    async def start(self) -> None:
        config = AioConfig(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=self.region,
                config=config,
            )
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("storage is not started")
        return self._client

    # --- buckets -------------------------------------------------------------

    @staticmethod
    def tenant_bucket(tenant_id: str) -> str:
        return f"iaas-image-{_hex('image', tenant_id, 32)}"

    @staticmethod
    def export_buckets(tenant_id: str) -> list[str]:
        stem = _hex("export", tenant_id, 16)
        return [f"ims-export-{stem}-1", f"ims-export-{stem}-2"]

    async def ensure_bucket(self, name: str) -> None:
        if name in self._known_buckets:
            return
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await self.client.create_bucket(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        self._known_buckets.add(name)

    def forget_buckets(self) -> None:
        """Forget which buckets exist (after the backend was wiped): the next
        :meth:`ensure_bucket` creates them again."""
        self._known_buckets.clear()

    @staticmethod
    def is_emulator_bucket(name: str) -> bool:
        return name.startswith(("iaas-image-", "ims-export-"))

    async def empty_emulator_buckets(self) -> int:
        """Abort every multipart upload and delete every object of the
        emulator's buckets (``iaas-image-*``, ``ims-export-*``) on the backend,
        with the emulator's own keys; other buckets are left alone.  Returns
        how many objects and uploads went."""
        listed = await self.client.list_buckets()
        names = [b["Name"] for b in listed.get("Buckets", []) if self.is_emulator_bucket(b["Name"])]
        removed = 0

        async def empty(bucket: str) -> None:
            nonlocal removed
            paginator = self.client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=bucket):
                for upload in page.get("Uploads", []):
                    if await self.abort_upload(bucket, upload["Key"], upload["UploadId"]):
                        removed += 1
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    await self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                    removed += len(keys)

        async with anyio.create_task_group() as group:
            for name in names:
                group.start_soon(empty, name)
        return removed

    # --- objects -------------------------------------------------------------

    async def head(self, bucket: str, key: str) -> int | None:
        """The object's size, or ``None`` when it does not exist."""
        try:
            answer = await self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return int(answer["ContentLength"])

    async def md5(self, bucket: str, key: str) -> tuple[str, int]:
        """Stream the object once: ``(md5 hex, size)``."""
        hasher = Hasher()
        async with self.open(bucket, key) as stream:
            async for chunk in stream.chunks():
                await hasher.feed(chunk)
        return await hasher.hexdigest(), hasher.size

    @contextlib.asynccontextmanager
    async def open(
        self, bucket: str, key: str, first: int | None = None, last: int | None = None
    ) -> AsyncIterator[ObjectStream]:
        """``GetObject`` (optionally of bytes *first*..*last*, inclusive).
        Raises :class:`ClientError` (see :func:`is_missing`) before yielding."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if first is not None:
            kwargs["Range"] = f"bytes={first}-{'' if last is None else last}"
        answer = await self.client.get_object(**kwargs)
        body = answer["Body"]
        try:
            length = int(answer["ContentLength"])
            total = length
            content_range = answer.get("ContentRange")
            if content_range and "/" in content_range:
                total = int(content_range.rsplit("/", 1)[1])
            yield ObjectStream(length, total, body)
        finally:
            body.close()

    async def delete(self, bucket: str, key: str) -> None:
        with contextlib.suppress(ClientError):
            await self.client.delete_object(Bucket=bucket, Key=key)

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> bool:
        try:
            await self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError:
            return False
        return True

    async def copy(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, size: int
    ) -> None:
        """Server-side copy (multipart copy above 5 GiB)."""
        await self.ensure_bucket(dst_bucket)
        source = {"Bucket": src_bucket, "Key": src_key}
        if size <= COPY_LIMIT:
            await self.client.copy_object(Bucket=dst_bucket, Key=dst_key, CopySource=source)
            return
        upload = await self.client.create_multipart_upload(Bucket=dst_bucket, Key=dst_key)
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, COPY_PART), start=1):
                end = min(start + COPY_PART, size) - 1
                answer = await self.client.upload_part_copy(
                    Bucket=dst_bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            await self.client.complete_multipart_upload(
                Bucket=dst_bucket, Key=dst_key, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )  # fmt: skip
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.abort_upload(dst_bucket, dst_key, upload_id)
            raise

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> tuple[str, int]:
        """Store a byte stream by multipart upload, one part in memory at a
        time: ``(md5 hex, size)``.  The upload is aborted on any failure."""
        await self.ensure_bucket(bucket)
        upload = await self.client.create_multipart_upload(Bucket=bucket, Key=key)
        upload_id = upload["UploadId"]
        hasher = Hasher()
        parts: list[dict[str, Any]] = []
        try:
            buffer: list[bytes] = []
            buffered = 0

            async def flush() -> None:
                nonlocal buffer, buffered
                number = len(parts) + 1
                data = b"".join(buffer)
                buffer, buffered = [], 0
                answer = await self.client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})

            async for chunk in chunks:
                await hasher.feed(chunk)
                buffer.append(chunk)
                buffered += len(chunk)
                if buffered >= PART_SIZE:
                    await flush()
                    if on_progress is not None:
                        on_progress(hasher.size)
            if buffered or not parts:
                await flush()
            await self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.abort_upload(bucket, key, upload_id)
            raise
        return await hasher.hexdigest(), hasher.size
