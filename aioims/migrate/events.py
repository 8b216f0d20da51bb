"""Typed progress events of a migration, and the stream that delivers them.

Every event has ``at`` (``time.monotonic()`` when it was emitted).  Entry
events carry ``entry_id``.  The stream never blocks the migration: when the
consumer lags, periodic :class:`MigrationProgress` and
:class:`EntryProgress` events are merged (only the newest is kept); all other
events are delivered, in order.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ..transfer.events import TransferEvent

if TYPE_CHECKING:
    from .report import EntryResult, Report

__all__ = [
    "EntryFinished",
    "EntryProgress",
    "EntryRetrying",
    "EntryStage",
    "EntryStarted",
    "EntryTransfer",
    "MigrationEvent",
    "MigrationEvents",
    "MigrationFinished",
    "MigrationProgress",
    "MigrationStarted",
]


def _now() -> float:
    return time.monotonic()


@attrs.frozen(kw_only=True)
class MigrationEvent:
    """Base class of the migration events."""

    at: float = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class MigrationStarted(MigrationEvent):
    run_id: str
    owner: str
    entries: int
    #: Entries already finished (verified) by earlier runs.
    already_done: int
    #: Failed entries that this run will not retry (see ``retry_failed``).
    already_failed: int
    images: int
    parts: int
    bandwidth: float | None


@attrs.frozen(kw_only=True)
class EntryStarted(MigrationEvent):
    """A worker claimed the entry; ``stage`` is where it continues from."""

    entry_id: str
    name: str | None
    kind: str
    stage: str
    attempt: int


@attrs.frozen(kw_only=True)
class EntryStage(MigrationEvent):
    """The entry reached ``stage`` (recorded in the ledger)."""

    entry_id: str
    stage: str
    image_id: str | None = None


@attrs.frozen(kw_only=True)
class EntryTransfer(MigrationEvent):
    """An event of the entry's S3 transfer (:mod:`aioims.transfer.events`)."""

    entry_id: str
    event: TransferEvent


@attrs.frozen(kw_only=True)
class EntryProgress(MigrationEvent):
    """Bytes of the entry on S3 (resumed parts included)."""

    entry_id: str
    bytes_done: int
    total_bytes: int | None


@attrs.frozen(kw_only=True)
class EntryRetrying(MigrationEvent):
    entry_id: str
    attempt: int
    error: str
    code: str | None
    delay: float


@attrs.frozen(kw_only=True)
class EntryFinished(MigrationEvent):
    """The entry is verified (``result.status == "verified"``), failed for
    good, or was given up (lease lost, ``status == "released"``)."""

    entry_id: str
    result: EntryResult


@attrs.frozen(kw_only=True)
class MigrationProgress(MigrationEvent):
    """Sent periodically.  Bytes count what this process uploads (file and
    IMS-to-IMS entries); ``rate`` is this run's average in bytes/s."""

    bytes_done: int
    bytes_total: int
    rate: float | None
    eta: float | None
    entries_total: int
    entries_done: int
    entries_failed: int
    images_in_flight: int
    parts_in_flight: int
    max_images_in_flight: int
    max_parts_in_flight: int


@attrs.frozen(kw_only=True)
class MigrationFinished(MigrationEvent):
    report: Report


_MERGED = (MigrationProgress, EntryProgress)


class MigrationEvents:
    """The events of one run: ``async for event in events``.  Ends after
    :class:`MigrationFinished`; :attr:`report` is then set."""

    def __init__(self, max_buffer: int = 10_000) -> None:
        self._queue: deque[MigrationEvent] = deque()
        self._max = max_buffer
        self._wakeup = anyio.Event()
        self._closed = False
        self.report: Report | None = None
        self.dropped = 0
        self._stopper: Any = None

    def publish(self, event: MigrationEvent) -> None:
        if self._closed:
            return
        if isinstance(event, _MERGED) and len(self._queue) >= self._max:
            self.dropped += 1
            return
        if isinstance(event, _MERGED) and self._queue:
            last = self._queue[-1]
            same = type(last) is type(event) and getattr(last, "entry_id", None) == getattr(
                event, "entry_id", None
            )
            if same:  # the consumer has not seen the previous one: keep the newest
                self._queue[-1] = event
                self.dropped += 1
                self._wakeup.set()
                return
        self._queue.append(event)
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def cancel(self) -> None:
        """Stop the migration (as leaving the ``async with`` block does); the
        events then end (without :class:`MigrationFinished`) and
        :attr:`report` says ``cancelled``."""
        if self._stopper is not None:
            self._stopper()

    def __aiter__(self) -> MigrationEvents:
        return self

    async def __anext__(self) -> MigrationEvent:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
        return self._queue.popleft()
