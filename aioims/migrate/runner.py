"""One run of a migration: claim entries from the ledger, run each through
its stages under the transfer budget, retry, report (the public entry
points are in :mod:`.api`)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import attrs

from ..errors import (
    ChecksumMismatchError,
    ImageKilledError,
    IMSError,
    ServiceError,
    TransportError,
    UploadFailedError,
    ValidationError,
    WaitTimeoutError,
)
from ..transfer import TransferConfig
from ..transfer.errors import S3TransferError, SourceChangedError
from .budget import Budget, FairPartLimiter, ImageLimiter
from .events import (
    EntryFinished,
    EntryRetrying,
    EntryStarted,
    MigrationEvent,
    MigrationEvents,
    MigrationFinished,
    MigrationProgress,
    MigrationStarted,
)
from .flow import EntryFlow, EntryRun
from .ledger import EntryState, LeaseLost, Ledger
from .manifest import Entry, Manifest
from .report import EntryResult, Report, write_report
from .sources import SourceError

if TYPE_CHECKING:
    from ..session import IMSSession

__all__ = ["Migration", "describe", "retryable"]

_UPLOAD_KINDS = ("file", "ims")
_MAX_RETRY_DELAY = 300.0


def retryable(exc: BaseException) -> bool:
    """Is another attempt at the entry worth it?"""
    if isinstance(exc, (ValidationError, SourceError, ChecksumMismatchError)):
        return False
    if isinstance(exc, (ImageKilledError, WaitTimeoutError, SourceChangedError)):
        return True
    if isinstance(exc, UploadFailedError):
        return exc.__cause__ is not None and retryable(exc.__cause__)
    # Other API errors (quota, permission, state...) and bugs are not retried.
    return isinstance(exc, (TransportError, ServiceError, S3TransferError, OSError))


def describe(exc: BaseException, secrets_: Sequence[str] = ()) -> tuple[str, str, str | None]:
    """(code, message, request id) of a failure, with secrets cut out."""
    code = getattr(exc, "code", None)
    request_id = getattr(exc, "request_id", None)
    cause = exc.__cause__
    while cause is not None and (code is None or request_id is None):
        code = code or getattr(cause, "code", None)
        request_id = request_id or getattr(cause, "request_id", None)
        cause = cause.__cause__
    message = (exc.message if isinstance(exc, IMSError) else str(exc)) or type(exc).__name__
    for secret in secrets_:
        if secret:
            message = message.replace(secret, "…")
    if code is None:
        code = type(exc).__name__ if isinstance(exc, IMSError) else f"Internal.{type(exc).__name__}"
    return str(code), message[:2000], request_id


class Migration:
    """One run of a migration (see :func:`run`)."""

    def __init__(
        self,
        manifest: Manifest,
        entries: Sequence[Entry],
        *,
        ims: IMSSession,
        ledger: Ledger,
        budget: Budget,
        sources: Mapping[str, IMSSession],
        events: MigrationEvents,
        defaults: Mapping[str, Any] | None = None,
        retry_failed: bool = False,
        wait_for_others: bool = True,
        transfer_config: TransferConfig | None = None,
        wait_timeout: float = 3600.0,
        poll_interval: float = 1.0,
        progress_interval: float = 0.5,
        stream_timeout: float | None = None,
        report_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.manifest = manifest
        self.entries = {e.id: e for e in entries}
        self.ids = [e.id for e in entries]
        self.ims = ims
        self.ledger = ledger
        self.budget = budget
        self.sources = dict(sources)
        self.events = events
        self.defaults = {k: v for k, v in (defaults or {}).items() if v is not None}
        self.retry_failed = retry_failed
        self.wait_for_others = wait_for_others
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.stream_timeout = stream_timeout
        self.report_path = report_path
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.images = ImageLimiter(budget.images)
        self.parts = FairPartLimiter(budget.parts, bandwidth=budget.bandwidth)
        self._config = attrs.evolve(
            transfer_config or TransferConfig(), part_size=budget.part_size,
            max_concurrency=budget.image_parts,
            multipart_threshold=min(budget.part_size, 5 << 30), part_limiter=self.parts,
        )  # fmt: skip
        self.running: dict[str, EntryRun] = {}
        self.finished: set[str] = set()
        self.touched: set[str] = set()
        self.sizes: dict[str, int] = {}
        self.on_s3: dict[str, int] = {}
        self.bytes_uploaded = 0
        self.done = self.failed = 0
        self._parts_log: list[tuple[str, int, int]] = []
        self._checkpoint_dir_ready = False
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.report: Report | None = None

    # -- helpers used by EntryFlow --------------------------------------------------

    def publish(self, event: MigrationEvent) -> None:
        self.events.publish(event)

    def transfer_config(self) -> TransferConfig:
        return self._config

    def source_session(self, entry: Entry) -> IMSSession:
        return self.sources[entry.source["source"]]

    async def ensure_checkpoint_dir(self) -> None:
        if not self._checkpoint_dir_ready:
            path = self.ledger.checkpoint_dir
            await anyio.to_thread.run_sync(lambda: path.mkdir(mode=0o700, exist_ok=True))
            self._checkpoint_dir_ready = True

    def note_size(self, entry_id: str, size: int | None) -> None:
        if size and self.entries[entry_id].kind in _UPLOAD_KINDS:
            self.sizes[entry_id] = size

    def note_bytes(self, entry_id: str, done: int) -> None:
        self.on_s3[entry_id] = done

    def note_part(self, entry_id: str, part_number: int, size: int) -> None:
        self._parts_log.append((entry_id, part_number, size))
        self.bytes_uploaded += size

    # -- the run -------------------------------------------------------------------

    async def execute(self) -> Report:
        ledger = self.ledger
        await ledger.sync(list(self.entries.values()))
        if self.retry_failed:
            await ledger.reset_failed(self.ids)
        await ledger.start_run(self.run_id)
        states = await ledger.all(self.ids)
        await self._known_sizes(states)
        self.publish(MigrationStarted(
            run_id=self.run_id, owner=ledger.owner, entries=len(self.ids),
            already_done=sum(1 for s in states if s.stage == "verified"),
            already_failed=sum(1 for s in states if s.stage == "failed"),
            images=self.budget.images, parts=self.budget.parts, bandwidth=self.budget.bandwidth,
        ))  # fmt: skip
        status = "cancelled"
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat)
                tg.start_soon(self._ticker)
                async with anyio.create_task_group() as workers:
                    await self._dispatch(workers)
                tg.cancel_scope.cancel()
            status = "finished"
        finally:
            with anyio.CancelScope(shield=True):
                await self._flush_parts()
                await ledger.finish_run(self.run_id, status)
                self.report = await self._build_report(cancelled=status != "finished")
                if self.report_path is not None:
                    await write_report(self.report, self.report_path)
        assert self.report is not None
        self.publish(self._progress())
        self.publish(MigrationFinished(report=self.report))
        return self.report

    async def _known_sizes(self, states: Sequence[EntryState]) -> None:
        files = []
        for state in states:
            if state.size:
                self.note_size(state.entry_id, state.size)
                if state.stage == "verified":
                    self.on_s3[state.entry_id] = state.size
            elif self.entries[state.entry_id].kind == "file":
                files.append(state.entry_id)

        def stat_all() -> dict[str, int]:
            found = {}
            for entry_id in files:
                with suppress(OSError):
                    found[entry_id] = Path(self.entries[entry_id].source).stat().st_size
            return found

        for entry_id, size in (await anyio.to_thread.run_sync(stat_all)).items():
            self.note_size(entry_id, size)

    async def _dispatch(self, workers: Any) -> None:
        while True:
            await self.images.acquire(counted=False)
            try:
                state = await self.ledger.claim(
                    self.ids, exclude=set(self.running) | self.finished
                )
            except BaseException:
                self.images.release(counted=False)
                raise
            if state is not None:
                self.images.count()
                self.running[state.entry_id] = EntryRun(entry=self.entries[state.entry_id],
                                                        state=state)  # fmt: skip
                workers.start_soon(self._entry, state.entry_id)
                continue
            self.images.release(counted=False)
            if not self.wait_for_others:
                return
            pending = set(self.ids) - set(self.running) - self.finished
            if not await self.ledger.held_elsewhere(pending):
                return
            await anyio.sleep(min(self.ledger.lease / 4, 2.0))

    async def _entry(self, entry_id: str) -> None:
        run = self.running[entry_id]
        held = [True]

        def release_slot() -> None:
            if held[0]:
                held[0] = False
                self.images.release()

        async def reacquire() -> None:
            if not held[0]:
                await self.images.acquire()
                held[0] = True

        run.release_slot = release_slot
        self.touched.add(entry_id)
        try:
            with anyio.CancelScope() as scope:
                run.scope = scope
                await self._attempts(run, reacquire)
            if scope.cancelled_caught:
                raise LeaseLost(entry_id)
        except LeaseLost:
            state = await self.ledger.get(entry_id) or run.state
            self.publish(EntryFinished(entry_id=entry_id, result=EntryResult.from_state(
                state, this_run=True, status="released")))  # fmt: skip
        finally:
            release_slot()
            self.running.pop(entry_id, None)
            self.finished.add(entry_id)

    async def _attempts(self, run: EntryRun, reacquire: Callable[[], Any]) -> None:
        entry, ledger = run.entry, self.ledger
        secrets_ = [str(entry.source)] if entry.kind == "url" and "?" in str(entry.source) else []
        while True:
            run.attempt = run.state.attempts + 1
            started_at = run.state.started_at or time.time()
            await ledger.update(entry.id, attempts=run.attempt, started_at=started_at)
            run.state = attrs.evolve(run.state, attempts=run.attempt, started_at=started_at)
            self.publish(EntryStarted(entry_id=entry.id, name=entry.name, kind=entry.kind,
                                      stage=run.state.stage, attempt=run.attempt))  # fmt: skip
            t0 = time.monotonic()
            try:
                await EntryFlow(self, run).execute()
            except LeaseLost:
                raise
            except Exception as exc:
                elapsed = time.monotonic() - t0
                code, message, request_id = describe(exc, secrets_)
                run.state = await ledger.get(entry.id) or run.state
                stage = run.state.stage
                errors: dict[str, Any] = {"error_code": code, "error_message": message,
                          "request_id": request_id, "error_stage": stage}  # fmt: skip
                run.failures += 1  # an interrupted run's attempt is not a failure
                if retryable(exc) and run.failures < entry.attempts:
                    delay = min(entry.retry_delay * 2 ** (run.failures - 1), _MAX_RETRY_DELAY)
                    await ledger.update(entry.id, add_duration=elapsed, **errors)
                    self.publish(EntryRetrying(entry_id=entry.id, attempt=run.failures,
                                               error=message, code=code, delay=delay))  # fmt: skip
                    assert run.release_slot is not None
                    run.release_slot()
                    await anyio.sleep(delay)
                    await reacquire()
                    continue
                await ledger.update(
                    entry.id, stage="failed", resume_stage=stage, finished_at=time.time(),
                    add_duration=elapsed, release=True, **errors,
                )  # fmt: skip
                self.failed += 1
                await self._finished(entry.id)
                return
            await ledger.update(entry.id, add_duration=time.monotonic() - t0, release=True)
            self.done += 1
            if entry.id in self.sizes:
                self.on_s3[entry.id] = self.sizes[entry.id]
            await self._finished(entry.id)
            return

    async def _finished(self, entry_id: str) -> None:
        state = await self.ledger.get(entry_id)
        assert state is not None
        self.publish(EntryFinished(entry_id=entry_id,
                                   result=EntryResult.from_state(state, this_run=True)))

    # -- background ------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.ledger.lease / 3)
            lost = await self.ledger.heartbeat(list(self.running))
            for entry_id in lost:
                run = self.running.get(entry_id)
                if run is not None and run.scope is not None:
                    run.lease_lost = True
                    run.scope.cancel()

    async def _ticker(self) -> None:
        while True:
            await anyio.sleep(self.progress_interval)
            await self._flush_parts()
            self.publish(self._progress())

    async def _flush_parts(self) -> None:
        parts, self._parts_log = self._parts_log, []
        if parts:
            await self.ledger.log_parts(self.run_id, parts)

    def _progress(self) -> MigrationProgress:
        total = sum(self.sizes.values())
        done = sum(min(self.on_s3.get(i, 0), self.sizes.get(i, 0)) for i in self.sizes)
        elapsed = time.monotonic() - self.started
        rate = self.bytes_uploaded / elapsed if elapsed > 0.2 and self.bytes_uploaded else None
        eta = max(total - done, 0) / rate if rate else None
        return MigrationProgress(
            bytes_done=done, bytes_total=total, rate=rate, eta=eta, entries_total=len(self.ids),
            entries_done=self.done, entries_failed=self.failed,
            images_in_flight=self.images.in_use, parts_in_flight=self.parts.in_use,
            max_images_in_flight=self.images.max_in_use,
            max_parts_in_flight=self.parts.max_in_use,
        )  # fmt: skip

    async def _build_report(self, *, cancelled: bool) -> Report:
        states = await self.ledger.all(self.ids)
        results = [EntryResult.from_state(s, this_run=s.entry_id in self.touched) for s in states]
        return Report(
            run_id=self.run_id, owner=self.ledger.owner, started_at=self.started_wall,
            finished_at=time.time(), entries=results,
            max_images_in_flight=self.images.max_in_use,
            max_parts_in_flight=self.parts.max_in_use, images_limit=self.budget.images,
            parts_limit=self.budget.parts, bytes_uploaded=self.bytes_uploaded,
            cancelled=cancelled,
        )  # fmt: skip


