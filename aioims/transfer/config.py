"""Transfer settings and the part-size adjuster.

S3 limits (and the vendor's S3 endpoints follow them): at most 10,000 parts;
every part but the last at least 5 MiB; a part at most 5 GiB; an object at
most 5 TiB; a single PutObject at most 5 GiB.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import attrs

from ..errors import ValidationError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * TiB
MAX_SINGLE_PUT_SIZE = 5 * GiB

_CHECKSUM_MODES = ("when_supported", "when_required")
_PART_CHECKSUMS = ("auto", "crc32c", "md5", None)
_SENDERS = ("aiohttp", "thread")


@runtime_checkable
class PartLimiter(Protocol):
    """A limit on parts in flight shared by several transfers
    (``TransferConfig(part_limiter=...)``; e.g.
    :class:`aioims.migrate.FairPartLimiter`).

    A transfer calls ``await acquire(owner, nbytes)`` before it reads a part
    (or the whole source of a single PutObject) and ``release(owner)`` once
    the part's buffer is given back — on success, failure or cancellation.
    ``owner`` identifies the transfer (for fairness between transfers);
    ``nbytes`` is the part's length (for a bandwidth cap).  ``acquire`` must
    hold nothing when it raises (cancellation included).
    """

    async def acquire(self, owner: object, nbytes: int) -> None: ...

    def release(self, owner: object) -> None: ...


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@attrs.frozen(kw_only=True)
class TransferConfig:
    """How a transfer runs.  Invalid values raise
    :class:`aioims.errors.ValidationError` when the config is built.

    Sizes are in bytes, times in seconds.
    """

    #: Wanted part size; raised to 5 MiB, and further so that the upload
    #: needs at most 10,000 parts (rounded up to a whole MiB).
    part_size: int = 8 * MiB
    #: Parts in flight at once; also the number of part buffers alive at once
    #: (peak memory ~ max_concurrency x part_size) and the connection pool size.
    max_concurrency: int = 8
    #: Sources smaller than this go up in one PutObject (at most 5 GiB).
    multipart_threshold: int = 8 * MiB
    #: Attempts per part (and per other S3 request) on transient errors.
    max_attempts_per_part: int = 5
    #: Backoff before retry n: uniform(d/2, d) with d = min(backoff_max, backoff_base * 2**(n-1)).
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    #: Send Content-MD5 with every part/PutObject (S3 then rejects corrupted bodies).
    content_md5: bool = True
    #: SigV4 payload signing.  ``None`` (default): off — botocore would hash every
    #: part with SHA-256 on the event loop; with ``content_md5`` the signed
    #: Content-MD5 header protects the body instead.  ``True`` signs payloads
    #: (costs loop time: 8 MiB of SHA-256 per part).
    payload_signing: bool | None = None
    region: str = "us-east-1"
    #: Check the S3 endpoint's TLS certificate (keep it on; use ``ca_bundle`` for a private CA).
    verify_ssl: bool = True
    #: PEM file with the CA certificate(s) that signed the endpoint's certificate.
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: botocore's own attempts per request (1 = botocore does not retry; the
    #: engine's per-part policy governs and is observable through events).
    botocore_max_attempts: int = 1
    request_checksum_calculation: str = "when_required"
    response_checksum_validation: str = "when_required"
    #: Bound on the time spent aborting a multipart upload after a failure.
    abort_timeout: float = 30.0
    #: Abort the multipart upload when the transfer is cancelled.  ``None``:
    #: abort unless a checkpoint file is used (the point of which is to resume).
    abort_on_cancel: bool | None = None
    #: Refresh credentials this long before ``UploadTarget.expires_at``.
    refresh_margin: float = 60.0
    #: Credential refreshes allowed per transfer.
    max_refreshes: int = 5
    #: Minimum time between two checkpoint writes (writes are coalesced).
    checkpoint_interval: float = 0.5
    #: How long to wait, at the end, for an async progress callback to catch up.
    event_drain_timeout: float = 10.0
    #: A :class:`PartLimiter` shared with other transfers: every part (and a
    #: single PutObject) also holds one of its slots, from before it is read
    #: until its buffer is released.  ``max_concurrency`` still applies.
    part_limiter: PartLimiter | None = attrs.field(default=None, eq=False, repr=False)
    #: Per-part integrity: ``"md5"`` (Content-MD5), ``"crc32c"``
    #: (``x-amz-checksum-crc32c``), ``"auto"`` (CRC32C where the endpoint
    #: honours it and a native CRC32C — the ``aioims[crc32c]`` extra — is
    #: installed; else Content-MD5) or ``None`` (none).  ``content_md5=False``
    #: turns per-part checksums off whatever this says.
    part_checksum: str | None = "md5"
    #: How part bodies reach the socket: ``"aiohttp"`` (aiobotocore's own
    #: session, bytes written by the event loop) or ``"thread"`` (a shared
    #: pool of worker threads with keep-alive sockets, plugged into
    #: aiobotocore through ``AioConfig(http_session_cls=...)``).
    sender: str = "thread"
    #: With ``sender="thread"``: every S3 request of the transfer is built,
    #: signed, sent and parsed by an aiobotocore client in aioims' transfer
    #: loop thread (:mod:`aioims.transfer.offload`), not on the caller's
    #: event loop, which then spends ~0.3 ms per part and a few ms per
    #: transfer on it.  ``False``: aiobotocore runs on the caller's loop.
    offload_s3: bool = True
    #: Testing hook: ``factory(client_kwargs)`` returns an async context
    #: manager yielding an S3 client (instead of aiobotocore's), e.g. a fake.
    s3_client_factory: Any = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        def bad(field: str, why: str) -> ValidationError:
            return ValidationError(f"TransferConfig.{field} {why}", field=field)

        if not _is_int(self.part_size) or self.part_size <= 0:
            raise bad("part_size", "must be a positive integer")
        if self.part_size > MAX_PART_SIZE:
            raise bad("part_size", "must be at most 5 GiB")
        if not _is_int(self.max_concurrency) or not 1 <= self.max_concurrency <= 1024:
            raise bad("max_concurrency", "must be an integer in 1..1024")
        if not _is_int(self.multipart_threshold) or self.multipart_threshold < 1:
            raise bad("multipart_threshold", "must be a positive integer")
        if self.multipart_threshold > MAX_SINGLE_PUT_SIZE:
            raise bad("multipart_threshold", "must be at most 5 GiB (the PutObject limit)")
        if not _is_int(self.max_attempts_per_part) or not 1 <= self.max_attempts_per_part <= 100:
            raise bad("max_attempts_per_part", "must be an integer in 1..100")
        if not _is_int(self.botocore_max_attempts) or not 1 <= self.botocore_max_attempts <= 10:
            raise bad("botocore_max_attempts", "must be an integer in 1..10")
        if not _is_int(self.max_refreshes) or self.max_refreshes < 0:
            raise bad("max_refreshes", "must be a non-negative integer")
        for name in ("backoff_base", "backoff_max", "refresh_margin", "checkpoint_interval"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise bad(name, "must be a non-negative number")
        for name in ("connect_timeout", "read_timeout", "abort_timeout", "event_drain_timeout"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise bad(name, "must be a positive number")
        for name in ("request_checksum_calculation", "response_checksum_validation"):
            if getattr(self, name) not in _CHECKSUM_MODES:
                raise bad(name, f"must be one of {_CHECKSUM_MODES}")
        if not isinstance(self.region, str) or not self.region:
            raise bad("region", "must be a non-empty string")
        if self.ca_bundle is not None and not isinstance(self.ca_bundle, str):
            raise bad("ca_bundle", "must be a path string or None")
        if self.part_checksum not in _PART_CHECKSUMS:
            raise bad("part_checksum", f"must be one of {_PART_CHECKSUMS}")
        if self.sender not in _SENDERS:
            raise bad("sender", f"must be one of {_SENDERS}")
        if self.s3_client_factory is not None and not callable(self.s3_client_factory):
            raise bad("s3_client_factory", "must be callable")
        if self.part_limiter is not None and not isinstance(self.part_limiter, PartLimiter):
            raise bad("part_limiter", "must have async acquire(owner, nbytes) and release(owner)")

    @property
    def sign_payload(self) -> bool:
        """The effective ``payload_signing_enabled`` S3 setting."""
        if self.payload_signing is not None:
            return self.payload_signing
        return False


@attrs.frozen
class PartPlan:
    """How a source of ``size`` bytes is cut into parts."""

    size: int
    part_size: int
    part_count: int
    multipart: bool

    def part_length(self, part_number: int) -> int:
        """Length of part ``part_number`` (1-based)."""
        if not 1 <= part_number <= self.part_count:
            raise IndexError(part_number)
        if part_number < self.part_count:
            return self.part_size
        return self.size - self.part_size * (self.part_count - 1)

    def part_offset(self, part_number: int) -> int:
        return self.part_size * (part_number - 1)


def adjust_part_size(size: int, wanted: int) -> int:
    """The part size to use for ``size`` bytes: ``wanted``, raised to 5 MiB
    and then to ``ceil(size / 10,000)`` rounded up to a whole MiB."""
    part_size = max(wanted, MIN_PART_SIZE)
    if math.ceil(size / part_size) > MAX_PARTS:
        part_size = math.ceil(math.ceil(size / MAX_PARTS) / MiB) * MiB
    if part_size > MAX_PART_SIZE:  # only for sizes beyond the 5 TiB object limit
        raise ValidationError(f"{size} bytes cannot be cut into {MAX_PARTS} parts", field="size")
    return part_size


def plan_parts(size: int, config: TransferConfig, *, part_size: int | None = None) -> PartPlan:
    """Cut ``size`` bytes into parts (``part_size`` overrides the config's,
    e.g. the one recorded in a checkpoint).  Raises ValidationError for a
    negative size or one above 5 TiB."""
    if not _is_int(size) or size < 0:
        raise ValidationError(f"invalid source size {size!r}", field="size")
    if size > MAX_OBJECT_SIZE:
        raise ValidationError(
            f"source of {size} bytes exceeds the 5 TiB S3 object limit", field="size"
        )
    if size == 0 or size < config.multipart_threshold:
        return PartPlan(size=size, part_size=size, part_count=1, multipart=False)
    chosen = adjust_part_size(size, part_size if part_size is not None else config.part_size)
    return PartPlan(
        size=size, part_size=chosen, part_count=math.ceil(size / chosen), multipart=True
    )
