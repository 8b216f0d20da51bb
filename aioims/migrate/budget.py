"""The transfer budget of a migration: images in flight, parts in flight
(shared fairly between images) and an optional bandwidth cap.

:class:`FairPartLimiter` implements :class:`aioims.transfer.config.PartLimiter`:
hand the same instance to every transfer (``TransferConfig(part_limiter=...)``)
and at most ``limit`` parts are in flight across all of them.  When a slot
frees up it goes to the waiting transfer that holds the fewest slots (ties:
round robin), so a huge image cannot starve small ones: with ``k`` images
moving, each converges to ``limit / k`` slots.

The bandwidth cap is a token bucket on bytes, charged when a part gets its
slot (before it is read): the long-run upload rate stays under the cap,
with bursts of at most one second's worth of bytes (or one part, if larger).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
import attrs

__all__ = ["Budget", "FairPartLimiter", "ImageLimiter", "TokenBucket"]


@attrs.frozen(kw_only=True)
class Budget:
    """Limits for a whole migration run.

    ``images``: entries worked on at once (N); ``parts``: S3 parts in flight
    across all images (M); ``bandwidth``: bytes per second uploaded by this
    process (None: no cap); ``part_size``: the wanted part size;
    ``per_image_parts``: cap on one image's parts (default: ``parts``).
    """

    images: int = 4
    parts: int = 16
    bandwidth: float | None = None
    part_size: int = 8 * 1024 * 1024
    per_image_parts: int | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("images", "parts", "part_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Budget.{name} must be a positive integer, got {value!r}")
        if self.per_image_parts is not None and (
            not isinstance(self.per_image_parts, int) or self.per_image_parts < 1
        ):
            raise ValueError("Budget.per_image_parts must be a positive integer or None")
        if self.bandwidth is not None and (
            isinstance(self.bandwidth, bool)
            or not isinstance(self.bandwidth, (int, float))
            or not self.bandwidth > 0
        ):
            raise ValueError("Budget.bandwidth must be a number of bytes/s > 0 or None")

    @property
    def image_parts(self) -> int:
        """``max_concurrency`` of one image's transfer."""
        return min(self.per_image_parts or self.parts, self.parts)


class TokenBucket:
    """Bytes per second with a burst of ``burst`` bytes (default one second's
    worth).  A take larger than what is available waits for the refill; one
    larger than the burst is allowed once the bucket is full (it then runs a
    debt), so any part size works."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = anyio.Lock()
        self.taken = 0

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, nbytes: int) -> None:
        async with self._lock:  # FIFO: takers are served in order
            while True:
                self._refill()
                need = min(float(nbytes), self.burst)
                if self._tokens >= need:
                    self._tokens -= nbytes
                    self.taken += nbytes
                    return
                await anyio.sleep((need - self._tokens) / self.rate)


class _Waiter:
    __slots__ = ("event", "granted", "owner")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.event = anyio.Event()
        self.granted = False


class FairPartLimiter:
    """At most ``limit`` parts in flight across every transfer sharing it,
    granted max-min fairly between owners (see the module docstring).

    Counters for observers: ``in_use``, ``max_in_use``, ``granted``, ``held``
    (owner → slots) and ``max_owners`` (most owners holding slots at once).
    """

    def __init__(self, limit: int, *, bandwidth: float | None = None) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("limit must be a positive integer")
        self.limit = limit
        self.bucket = TokenBucket(bandwidth, max(bandwidth, 1.0)) if bandwidth else None
        self.held: dict[object, int] = {}
        self._waiting: dict[object, deque[_Waiter]] = {}
        self.in_use = 0
        self.max_in_use = 0
        self.granted = 0
        self.max_owners = 0

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def acquire(self, owner: object, nbytes: int) -> None:
        if self.in_use < self.limit and not self._waiting:
            self._grant(owner)
        else:
            waiter = _Waiter(owner)
            self._waiting.setdefault(owner, deque()).append(waiter)
            try:
                await waiter.event.wait()
            except BaseException:
                if waiter.granted:
                    self.release(owner)
                else:
                    self._forget(waiter)
                raise
        if self.bucket is not None and nbytes > 0:
            try:
                await self.bucket.take(nbytes)
            except BaseException:
                self.release(owner)
                raise

    def release(self, owner: object) -> None:
        count = self.held.get(owner, 0)
        if count <= 0:
            raise RuntimeError("release() without a matching acquire()")
        if count == 1:
            del self.held[owner]
        else:
            self.held[owner] = count - 1
        self.in_use -= 1
        self._dispatch()

    @asynccontextmanager
    async def slot(self, owner: object, nbytes: int = 0) -> AsyncIterator[None]:
        await self.acquire(owner, nbytes)
        try:
            yield
        finally:
            self.release(owner)

    def _grant(self, owner: object) -> None:
        self.held[owner] = self.held.get(owner, 0) + 1
        self.in_use += 1
        self.granted += 1
        self.max_in_use = max(self.max_in_use, self.in_use)
        self.max_owners = max(self.max_owners, len(self.held))

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._waiting.get(waiter.owner)
        if queue is None:
            return
        with suppress(ValueError):
            queue.remove(waiter)
        if not queue:
            del self._waiting[waiter.owner]

    def _dispatch(self) -> None:
        while self.in_use < self.limit and self._waiting:
            # Fewest slots held first; among equals, the longest-waiting owner
            # (dict order: an owner served with more waiters goes to the back).
            owner = min(self._waiting, key=lambda o: self.held.get(o, 0))
            queue = self._waiting.pop(owner)
            waiter = queue.popleft()
            if queue:
                self._waiting[owner] = queue
            waiter.granted = True
            self._grant(owner)
            waiter.event.set()


class ImageLimiter:
    """At most ``limit`` images in flight (a semaphore with counters)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphore = anyio.Semaphore(limit)
        self.in_use = 0
        self.max_in_use = 0

    async def acquire(self, *, counted: bool = True) -> None:
        """Take a slot; ``counted=False`` takes it before knowing whether
        there is an image to give it to (then :meth:`count` or
        ``release(counted=False)``)."""
        await self._semaphore.acquire()
        if counted:
            self.count()

    def count(self) -> None:
        self.in_use += 1
        self.max_in_use = max(self.max_in_use, self.in_use)

    def release(self, *, counted: bool = True) -> None:
        if counted:
            self.in_use -= 1
        self._semaphore.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


def parse_rate(text: str | float | int | None) -> float | None:
    """``"50M"``, ``"1.5G"``, ``"800k"``, ``"100MiB/s"`` or a number → bytes/s
    (binary units); None/``""``/``0`` → no cap."""
    if text is None or text == "" or text == 0:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) if text > 0 else None
    raw = str(text).strip().lower().removesuffix("/s").removesuffix("ib").removesuffix("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    factor = 1
    if raw and raw[-1] in units:
        factor = units[raw[-1]]
        raw = raw[:-1]
    try:
        value = float(raw) * factor
    except ValueError:
        raise ValueError(f"not a rate: {text!r} (e.g. 50M, 1.5G, 800k)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a rate: {text!r}")
    return value or None


def parse_size(text: str | int) -> int:
    """``"8M"``, ``"16MiB"``, ``"1G"`` or an int → bytes."""
    value = parse_rate(text)
    if value is None or value != int(value):
        raise ValueError(f"not a size: {text!r}")
    return int(value)
