"""The one multipart driver: every upload of aioims goes through :func:`drive`.

::

    reconcile(journal, ListParts, HEAD)  →  [CRC32C probe] + sweep strays + create  |  resume
        →  journal.save(upload id)  →  abort registered  →  parts (from a
        PartSource, under the part slots / shared limiter, per-part retry)
        →  source unchanged?  →  complete (gone + HEAD = already complete)
        →  journal.save(completed)  →  sweep strays  →  TransferResult

Rules (docs/uploading.md has them as a table "crash point → next run"):

* **intent before the step**: the upload id is saved in the journal before
  any part is sent; a finished part is noted (coalesced writes); a completed
  upload is saved as ``completed`` before the driver returns;
* **no orphans**: before creating an upload and after completing one, the
  key's multipart uploads are listed (``ListMultipartUploads``, prefix =
  key) and every one that is not the journal's is aborted (they come from a
  CreateMultipartUpload whose answer was lost, or from a run killed before
  it saved its upload id).  Credentials that may not list skip the sweep
  (the coordinator then names the upload in ``upload-done(failed)``);
* **nothing sent twice**: a resume trusts the parts ``ListParts`` shows
  (every page) with the size the plan expects; an upload found gone whose
  object is there with the expected size and multipart ETag was completed
  by the interrupted run: nothing is sent again;
* **failure**: cancelled (or crashed) with a journal → the upload stays for a
  resume; failed for good → aborted (resumable failures keep it when there
  is a journal).  A gone upload is never reported as aborted without a HEAD
  showing that the object was not completed;
* **per-part checksum** (one rule, :meth:`Driver._checksum_kind`): a new
  upload uses ``part_checksum`` (``"auto"``: the endpoint's CRC32C probe,
  :meth:`Engine.probe_crc32c`, once per endpoint, before
  CreateMultipartUpload); a CRC32C upload is created with
  ``ChecksumAlgorithm="CRC32C"`` and completed with every part's CRC32C.
  **A resumed upload's algorithm wins**: what it was created with (ListParts'
  ``ChecksumAlgorithm``, else the journal's record) decides — ``CRC32C`` ⇒
  CRC32C parts whatever the config says; none ⇒ Content-MD5 instead of
  CRC32C (or nothing, as configured); no probe.  A resumed CRC32C upload
  trusts only the parts whose CRC32C is known (ListParts or the journal):
  Complete needs it; the others are sent again.

The abort rule in detail:

* success: a stand-alone checkpoint file is deleted (a lifecycle journal
  keeps the ``completed`` record until the image is verified);
* cancellation (or a crash): the multipart upload is aborted unless a
  journal is used (``TransferConfig.abort_on_cancel`` overrides);
* failure without a journal: always aborted;
* failure with a journal: kept (resumable) when the failure may heal —
  attempts ran out on transient errors, or the credentials expired and could
  not be refreshed; aborted when it will not.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Union, cast

import anyio
import attrs
from anyio.abc import TaskGroup

from .. import hooks
from ..errors import ValidationError
from ..models.upload import UploadTarget
from ._engine import CleanupRegistry, Engine, multipart_etag, upload_gone
from .checkpoint import Checkpoint, PartJournal
from .checksums import CRC32C_ALGORITHM, crc32c_is_fast
from .config import PartPlan, TransferConfig, plan_parts
from .errors import CredentialsExpiredError, S3TransferError, SourceChangedError
from .events import (
    BytesSent,
    CredentialsRefreshed,
    Emitter,
    EventStream,
    ProgressCallback,
    TransferCompleted,
    TransferFailed,
    TransferStarted,
)
from .hashing import OrderedHasher, PartBuffer, PartSlots, checksum_part, new_md5
from .region import FileRegion
from .results import CompletedPart, TransferResult
from .s3 import RefreshCallable, S3Clients, endpoint_url
from .sources import FileSource, PartSource

logger = logging.getLogger("aioims.transfer")

#: ListParts / ListMultipartUploads answers meaning "not allowed to list".
_LIST_DENIED = frozenset({"AccessDenied", "NotImplemented", "MethodNotAllowed"})
#: Emit a byte-level progress event at most every this many bytes per part.
_PROGRESS_STEP = 1 << 20

#: A part's request body: a part buffer, or a region of the source file.
Body = Union[io.BytesIO, FileRegion]  # noqa: UP007 - runtime alias


def sends_file_region(
    config: TransferConfig,
    endpoint: str,
    checksum: str | None,
    whole_md5: bool,
    source: PartSource,
) -> bool:
    """Are parts sent as :class:`~aioims.transfer.region.FileRegion` bodies
    (sent by the sender's worker threads straight from the file, no part
    buffer) instead of being read?

    Regions on http and https; sendfile only on http (the sender sends a
    region with ``sendfile`` on ``http://``, and over TLS reads it slice by
    slice into its thread's slice buffer).  Exactly when nothing but the
    sender needs a part's bytes:

    * the threaded sender sends the parts (``sender="thread"``; aiohttp
      would read the bytes on the event loop);
    * the endpoint is ``http://`` or ``https://``;
    * no per-part checksum (``checksum`` is None: no Content-MD5, no CRC32C);
    * no whole-file MD5 (``whole_md5`` False: no hasher reads the parts);
    * no SigV4 payload signing (botocore would SHA-256 the body);
    * no flexible checksum of botocore's own
      (``request_checksum_calculation="when_required"``: else botocore
      reads the body for a CRC32 header, or wraps it in an aws-chunked body
      with a trailer over TLS);
    * the source is a regular file (a :class:`FileSource`).
    """
    return (
        config.sender == "thread"
        and endpoint.lower().startswith(("http://", "https://"))
        and checksum is None
        and not whole_md5
        and not config.sign_payload
        and config.request_checksum_calculation == "when_required"
        and isinstance(source, FileSource)
        and source.regular
    )


def check_target(target: UploadTarget) -> None:
    if not isinstance(target, UploadTarget):
        raise ValidationError("target must be an aioims.UploadTarget", field="target")
    for field in ("bucket", "file", "domain", "access_key"):
        if not getattr(target, field):
            raise ValidationError(f"upload target has no {field}", field=field)


def is_resumable(exc: BaseException) -> bool:
    """May a later run with the same journal succeed where this failed?"""
    if isinstance(exc, CredentialsExpiredError):
        return True
    if isinstance(exc, S3TransferError):
        return exc.transient
    return False


class _Guard:
    """Runs tasks of a task group; the first exception cancels the group and
    is kept (re-raised by :meth:`raise_if_failed`, not as an ExceptionGroup)."""

    def __init__(self, task_group: TaskGroup) -> None:
        self.error: Exception | None = None
        self._scope = task_group.cancel_scope

    async def run(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        try:
            await func(*args)
        except Exception as exc:
            if self.error is None:
                self.error = exc
            self._scope.cancel()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


class _Progress:
    """Bytes sent: finished parts plus how far the in-flight ones were read."""

    def __init__(self, emitter: Emitter, total: int) -> None:
        self.emitter = emitter
        self.total = total
        self.done = 0
        self.inflight: dict[int, int] = {}
        self._last = -1

    def attach(self, number: int, body: Body) -> None:
        if not isinstance(body, (PartBuffer, FileRegion)) or not self.emitter.active:
            return
        self.inflight[number] = 0
        step = _PROGRESS_STEP
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def update(position: int) -> None:
            if number in self.inflight and position - self.inflight[number] >= step:
                self.inflight[number] = position
                self.emit()

        def on_read(position: int) -> None:
            # Called by whoever sends the body: the loop (aiohttp reading
            # it), a sender thread, or another loop's thread.
            if threading.get_ident() == loop_thread:
                update(position)
            else:
                loop.call_soon_threadsafe(update, position)

        body.on_read = on_read

    def detach(self, body: Body) -> None:
        if isinstance(body, (PartBuffer, FileRegion)):
            body.on_read = None

    def part_done(self, number: int, size: int) -> None:
        self.inflight.pop(number, None)
        self.done += size
        self.emit()

    def emit(self) -> None:
        value = min(self.total, self.done + sum(self.inflight.values()))
        if value != self._last:
            self._last = value
            self.emitter.emit(BytesSent(value, self.total))


class Driver:
    """One upload of ``source`` to ``target`` (one object, at most one
    multipart upload of ours)."""

    def __init__(
        self,
        target: UploadTarget,
        source: PartSource,
        *,
        config: TransferConfig,
        progress: ProgressCallback | EventStream | None,
        refresh: RefreshCallable | None,
        journal: PartJournal | None,
        image_id: str | None,
        md5: bool,
        discard_journal: bool,
    ) -> None:
        check_target(target)
        self.target = target
        self.source = source
        self.config = config
        self.refresh = refresh
        self.journal = journal
        self.image_id = image_id
        self.md5 = md5
        self.discard_journal = discard_journal
        self.plan: PartPlan = plan_parts(source.size, config)
        self.emitter = Emitter(progress)
        self.cleanup = CleanupRegistry()
        self.resumed_parts = 0
        self.started = time.monotonic()
        self._engine: Engine | None = None
        self._abort_handle: int | None = None
        self._journal_task: anyio.CancelScope | None = None
        self._failed_emitted = False
        self._aborted = False
        self._checksum_resolved = False
        self._checksum: str | None = None
        #: Continuing a multipart upload created by an earlier run (its
        #: checksum algorithm is known: ``engine.checksum_algorithm``).
        self._resuming = False
        self._regions: bool | None = None

    @property
    def engine(self) -> Engine:
        assert self._engine is not None
        return self._engine

    # -- lifecycle --------------------------------------------------------------

    async def run(self) -> TransferResult:
        failure: Exception | None = None
        result: TransferResult | None = None
        async with anyio.create_task_group() as bg:
            self.emitter.start(bg)
            try:
                async with S3Clients(
                    self.target, self.config, self.refresh, self._refreshed
                ) as clients:
                    self._engine = Engine(clients, self.config, self.plan, self.emitter)
                    try:
                        if self.plan.multipart:
                            result = await self._multipart(bg)
                        else:
                            result = await self._single()
                    except BaseException as exc:
                        replacement = await self._on_failure(exc)
                        if replacement is not None:
                            raise replacement  # noqa: B904 - keeps the original's cause
                        raise
                    finally:
                        if self._journal_task is not None:
                            self._journal_task.cancel()
                self.emitter.emit(TransferCompleted(result))
            except Exception as exc:
                failure = exc
                if not self._failed_emitted:
                    self.emitter.emit(TransferFailed(exc))
            await self.emitter.aclose(self.config.event_drain_timeout)
            bg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        assert result is not None
        return result

    def _refreshed(self, count: int) -> None:
        self.emitter.emit(CredentialsRefreshed(count))

    def _emit_started(self) -> None:
        engine = self.engine
        self.emitter.emit(
            TransferStarted(
                total_bytes=self.plan.size,
                part_count=self.plan.part_count,
                upload_id=engine.upload_id,
                resumed_parts=self.resumed_parts,
                resumed_bytes=engine.bytes_done,
                part_size=self.plan.part_size,
            )
        )

    def _result(self, *, etag: str | None, md5: str | None) -> TransferResult:
        engine = self.engine
        return TransferResult(
            upload_id=engine.upload_id,
            parts=[engine.parts[n] for n in sorted(engine.parts)],
            md5=md5,
            size=self.plan.size,
            resumed_parts=self.resumed_parts,
            elapsed=time.monotonic() - self.started,
            bucket=engine.bucket,
            key=engine.key,
            etag=etag,
            refreshes=engine.clients.refreshes,
        )

    # -- one PutObject -----------------------------------------------------------

    async def _single(self) -> TransferResult:
        limiter = self.config.part_limiter
        source, size = self.source, self.plan.size
        if limiter is not None:
            await limiter.acquire(self, size)
        try:
            whole = new_md5() if self.md5 else None
            kind = await self._checksum_kind()
            data: Body
            if await self._sends_regions():
                data = source.region(0, size)
            elif source.random_access:
                data, _ = await source.read_part(0, size, None, None)
            else:
                await source.start_at(0)
                data, got = await source.read_exact(size)
                if got != size:
                    raise _short(size, got)
                if not await source.at_eof():
                    raise SourceChangedError(
                        f"the stream yielded more than the {size} bytes announced"
                    )
            checksum: dict[str, str] = {}
            if isinstance(data, io.BytesIO):
                checksum = await anyio.to_thread.run_sync(checksum_part, data, kind, whole)
            self._emit_started()
            part = await self.engine.put_object(cast(io.BytesIO, data), size, checksum)
            self.emitter.emit(BytesSent(size, size))
            del data
        finally:
            if limiter is not None:
                limiter.release(self)
        await source.check_unchanged()
        return self._result(etag=part.etag, md5=whole.hexdigest() if whole is not None else None)

    async def _checksum_kind(self) -> str | None:
        """What protects each part: ``"md5"``, ``"crc32c"`` or None — the one
        rule, decided once per transfer:

        * resuming a multipart upload: **its algorithm wins** (no probe).
          Created with ``CRC32C`` ⇒ ``"crc32c"`` whatever the config says (AWS
          refuses a part without it, and Complete needs every part's);
          created without ⇒ the config's ``"md5"`` or None, and ``"crc32c"``
          or ``"auto"`` become ``"md5"`` (AWS refuses a CRC32C part there);
        * otherwise (a new upload, a single PutObject): ``part_checksum``
          (None when ``content_md5=False``); ``"auto"`` is ``"crc32c"`` when a
          native CRC32C is installed and the endpoint honours it
          (:meth:`Engine.probe_crc32c`, called before CreateMultipartUpload),
          else ``"md5"``.
        """
        if not self._checksum_resolved:
            configured = self.config.part_checksum if self.config.content_md5 else None
            kind = configured
            if self._resuming:
                declared = self.engine.checksum_algorithm
                if declared == CRC32C_ALGORITHM:
                    kind = "crc32c"
                elif configured in ("crc32c", "auto"):
                    kind = "md5"
                if kind != configured and configured != "auto":
                    logger.info("upload %s was created with checksum algorithm %s: its parts "
                                "carry %s, not %s", self.engine.upload_id, declared,
                                kind, configured)  # fmt: skip
            elif kind == "auto":
                honoured = crc32c_is_fast() and await self.engine.probe_crc32c()
                kind = "crc32c" if honoured else "md5"
            self._checksum, self._checksum_resolved = kind, True
        return self._checksum

    async def _sends_regions(self) -> bool:
        """Parts go as file regions (:func:`sends_file_region`)."""
        if self._regions is None:
            self._regions = sends_file_region(
                self.config,
                endpoint_url(self.target.domain),
                await self._checksum_kind(),
                self.md5,
                self.source,
            )
        return self._regions

    # -- multipart ---------------------------------------------------------------

    async def _multipart(self, bg: TaskGroup) -> TransferResult:
        engine, journal, source = self.engine, self.journal, self.source
        state: Checkpoint | None = None
        resumed: dict[int, CompletedPart] = {}
        if journal is not None and source.identity is not None:
            state, resumed = await self._reconcile()
            if state is not None and state.completed:
                return await self._already_complete(state)
        if state is None:
            kind = await self._checksum_kind()  # "auto": the probe comes before the create
            await self._sweep(keep=None)
            await engine.create(CRC32C_ALGORITHM if kind == "crc32c" else None)
            await hooks.reach("multipart-create:after", upload_id=engine.upload_id)
            if journal is not None and source.identity is not None:
                assert engine.upload_id is not None
                state = Checkpoint(
                    bucket=engine.bucket,
                    key=engine.key,
                    image_id=self.image_id,
                    upload_id=engine.upload_id,
                    part_size=self.plan.part_size,
                    size=self.plan.size,
                    source=source.identity,
                    checksum_algorithm=engine.checksum_algorithm,
                )
                await journal.save(state)  # a crash from now on leaves a resumable record
        else:
            engine.upload_id = state.upload_id
            engine.checksum_algorithm = state.checksum_algorithm
            self._resuming = True
            if journal is not None:
                # What S3 holds now (ListParts), so that a later run can tell a
                # completed upload from a lost one even if this one dies in Complete.
                await journal.save(state)
        self._abort_handle = self.cleanup.register("abort multipart upload", self._abort)
        for part in resumed.values():
            engine.record(part)
        self.resumed_parts = len(resumed)
        if journal is not None and state is not None:
            scope = self._journal_task = anyio.CancelScope()
            bg.start_soon(self._run_journal, scope)
        self._emit_started()
        if resumed:
            logger.debug("resuming upload %s: %d part(s) already on S3", engine.upload_id,
                         len(resumed))  # fmt: skip
        whole_md5 = await self._send_parts(resumed)
        await source.check_unchanged()
        if journal is not None and state is not None:
            # Every part on record before Complete is sent: if the process dies
            # with Complete done but unrecorded, the next run can prove it
            # (HEAD = the parts' multipart ETag) instead of sending again.
            state.parts = dict(engine.parts)
            await journal.save(state)
        await hooks.reach("complete:before", upload_id=engine.upload_id)
        etag = await engine.complete()
        await hooks.reach("complete:after", upload_id=engine.upload_id)
        await self._completed(state, etag)
        return self._result(etag=etag, md5=whole_md5)

    async def _run_journal(self, scope: anyio.CancelScope) -> None:
        assert self.journal is not None
        with scope:
            await self.journal.run()

    async def _completed(self, state: Checkpoint | None, etag: str) -> None:
        """The object exists: record it, unregister the abort, sweep strays."""
        if self._abort_handle is not None:
            self.cleanup.unregister(self._abort_handle)
            self._abort_handle = None
        if self.journal is not None and state is not None:
            state.completed, state.etag = True, etag
            state.parts = dict(self.engine.parts)
            await self.journal.save(None if self.discard_journal else state)
        await self._sweep(keep=None)

    async def _already_complete(self, state: Checkpoint) -> TransferResult:
        engine = self.engine
        engine.upload_id = state.upload_id
        for part in state.parts.values():
            engine.record(part)
        self.resumed_parts = len(state.parts)
        self._emit_started()
        md5 = None
        if self.md5 and self.source.random_access:
            hasher = OrderedHasher(self.plan, set(range(1, self.plan.part_count + 1)),
                                   self.source.hash_range, lambda n: None)  # fmt: skip
            await hasher.run()
            md5 = hasher.hexdigest()
        if self.journal is not None and self.discard_journal:
            await self.journal.save(None)
        await self._sweep(keep=None)
        logger.info("upload %s of %s/%s was already complete: nothing re-sent",
                    state.upload_id, engine.bucket, engine.key)  # fmt: skip
        return self._result(etag=state.etag, md5=md5)

    async def _reconcile(self) -> tuple[Checkpoint | None, dict[int, CompletedPart]]:
        """Match the journal against the source and S3.  Returns the state
        to continue (None: start a new upload) and the parts to trust: those
        S3 lists (ListParts, every page) with the size the plan expects."""
        assert self.journal is not None
        engine, source = self.engine, self.source
        cp = await self.journal.load()
        if cp is None:
            return None, {}
        if (cp.bucket, cp.key) != (engine.bucket, engine.key) or (
            self.image_id is not None and cp.image_id is not None and cp.image_id != self.image_id
        ):
            logger.warning("journal of %s/%s is for another object: starting afresh",
                           engine.bucket, engine.key)  # fmt: skip
            await self.journal.save(None)
            return None, {}
        plan: PartPlan | None = None
        if cp.source == source.identity and cp.size == source.size:
            try:
                plan = plan_parts(cp.size, self.config, part_size=cp.part_size)
            except ValidationError:
                plan = None
            if plan is not None and (not plan.multipart or plan.part_size != cp.part_size):
                plan = None
        if plan is None:
            logger.info("source changed since the journal (or incompatible plan): aborting "
                        "upload %s, starting over", cp.upload_id)  # fmt: skip
            if not cp.completed:
                await engine.abort(cp.upload_id)
            await self.journal.save(None)
            return None, {}
        self.plan = engine.plan = plan
        if cp.completed:
            if await engine.object_is(plan.size, cp.etag or None):
                return cp, dict(cp.parts)
            logger.info("journal says upload %s completed but the object differs: starting over",
                        cp.upload_id)  # fmt: skip
            await self.journal.save(None)
            return None, {}
        listed: dict[int, CompletedPart] | None = None
        listed_algorithm: str | None = None
        try:
            listed, listed_algorithm = await engine.list_parts(cp.upload_id)
        except S3TransferError as err:
            if upload_gone(err.code, "ListParts"):
                if cp.parts and len(cp.parts) == plan.part_count:
                    expected = multipart_etag([cp.parts[n] for n in sorted(cp.parts)])
                    if await engine.object_is(plan.size, expected):
                        # Complete went through; the crash came before it was recorded.
                        cp.completed, cp.etag = True, expected
                        return cp, dict(cp.parts)
                logger.info("upload %s no longer exists: starting over", cp.upload_id)
                await self.journal.save(None)
                return None, {}
            if err.code not in _LIST_DENIED:
                raise
            logger.info("ListParts not allowed (%s): trusting the journal", err.code)
            listed = None
        # The upload's algorithm: what S3 lists, else what the journal recorded.
        algorithm = (listed_algorithm or cp.checksum_algorithm or "").upper() or None
        if algorithm not in (None, CRC32C_ALGORITHM):
            logger.info("upload %s was created with checksum algorithm %s (not one aioims "
                        "sends): aborting it, starting over", cp.upload_id, algorithm)  # fmt: skip
            await engine.abort(cp.upload_id)
            await self.journal.save(None)
            return None, {}
        candidates = cp.parts
        if listed is not None:  # S3's list, with CRC32Cs it did not list from the journal
            candidates = {n: _with_journal_crc(part, cp.parts.get(n)) for n, part in listed.items()}
        trusted = {
            number: part
            for number, part in candidates.items()
            if 1 <= number <= plan.part_count
            and part.size == plan.part_length(number)
            and (algorithm != CRC32C_ALGORITHM or part.checksum_crc32c is not None)
        }
        cp.parts = dict(trusted)
        cp.checksum_algorithm = algorithm
        return cp, trusted

    async def _sweep(self, keep: str | None) -> None:
        """Abort the key's multipart uploads other than ours (and ``keep``)."""
        engine = self.engine
        try:
            uploads = await engine.list_uploads()
        except S3TransferError as err:
            if err.code in _LIST_DENIED or err.http_status in (403, 405, 501):
                logger.debug("ListMultipartUploads not allowed (%s): no sweep", err.code)
                return
            logger.warning("could not list the multipart uploads of %s/%s: %s",
                           engine.bucket, engine.key, err)  # fmt: skip
            return
        ours = {engine.upload_id, keep} - {None}
        for _, upload_id in uploads:
            if upload_id in ours:
                continue
            logger.info("aborting stray multipart upload %s of %s/%s", upload_id, engine.bucket,
                        engine.key)  # fmt: skip
            await engine.abort(upload_id)

    async def _send_parts(self, resumed: dict[int, CompletedPart]) -> str | None:
        plan, source, config = self.plan, self.source, self.config
        slots = PartSlots(config.max_concurrency, plan.part_size, config.part_limiter, self)
        progress = _Progress(self.emitter, plan.size)
        progress.done = self.engine.bytes_done
        missing = [n for n in range(1, plan.part_count + 1) if n not in resumed]
        if missing:
            await self._checksum_kind()
        hasher: OrderedHasher | None = None
        whole: Any = None
        try:
            async with anyio.create_task_group() as tg:
                guard = _Guard(tg)
                if source.random_access:
                    if self.md5:
                        hasher = OrderedHasher(plan, set(resumed), source.hash_range,
                                               slots.release)  # fmt: skip
                        tg.start_soon(guard.run, hasher.run)
                    users = 2 if hasher is not None else 1
                    for number in missing:
                        await slots.acquire(number, users, plan.part_length(number))
                        tg.start_soon(guard.run, self._file_part, number, slots, hasher, progress)
                elif missing:
                    first = missing[0]
                    whole = new_md5() if self.md5 and first == 1 else None
                    tg.start_soon(guard.run, self._produce, first, set(resumed), slots, whole,
                                  tg, guard, progress)  # fmt: skip
        finally:
            slots.close()
        guard.raise_if_failed()
        if hasher is not None:
            return hasher.hexdigest()
        if whole is not None:
            return str(whole.hexdigest())
        return None

    async def _file_part(
        self, number: int, slots: PartSlots, hasher: OrderedHasher | None, progress: _Progress
    ) -> None:
        plan = self.plan
        offset, length = plan.part_offset(number), plan.part_length(number)
        if await self._sends_regions():  # no part buffer: nothing reads its bytes
            region = self.source.region(offset, length)
            await self._upload(number, region, length, {}, slots, progress)
            return
        data, checksum = await self.source.read_part(
            offset, length, await self._checksum_kind(), slots.recycled(length)
        )
        slots.attach(number, data)
        if hasher is not None:
            hasher.submit(number, data)
        await self._upload(number, data, length, checksum, slots, progress)

    async def _produce(
        self,
        first: int,
        resumed: set[int],
        slots: PartSlots,
        whole: Any,
        tg: TaskGroup,
        guard: _Guard,
        progress: _Progress,
    ) -> None:
        """Read an in-order source from part ``first`` and start a task
        uploading each part; parts S3 holds are read past, not sent."""
        plan, source = self.plan, self.source
        await source.start_at(plan.part_offset(first))
        for number in range(first, plan.part_count + 1):
            length = plan.part_length(number)
            if number in resumed:
                got = await _skip(source, length, whole)
                if got != length:
                    raise _short(plan.size, plan.part_offset(number) + got)
                continue
            await slots.acquire(number, 1, length)
            data, got = await source.read_exact(length, slots.recycled(length))
            slots.attach(number, data)
            if got != length:
                raise _short(plan.size, plan.part_offset(number) + got)
            checksum = await source.digest(data, await self._checksum_kind(), whole)
            tg.start_soon(guard.run, self._upload, number, data, length, checksum, slots, progress)
            del data
        if not await source.at_eof():
            raise SourceChangedError(
                f"the stream yielded more than the {plan.size} bytes announced"
            )

    async def _upload(
        self,
        number: int,
        data: Body,
        length: int,
        checksum: dict[str, str],
        slots: PartSlots,
        progress: _Progress,
    ) -> None:
        progress.attach(number, data)
        try:
            part = await self.engine.upload_part(number, cast(io.BytesIO, data), length, checksum)
        finally:
            progress.detach(data)
        del data
        slots.release(number)
        progress.part_done(number, length)
        await hooks.reach("part:after", part_number=number)
        if self.journal is not None and self.journal_active:
            self.journal.add_part(part)

    @property
    def journal_active(self) -> bool:
        return self._journal_task is not None

    # -- failure -----------------------------------------------------------------

    async def _abort(self) -> None:
        self._aborted = await self.engine.abort()

    def _should_abort(self, exc: BaseException, cancelled: bool) -> bool:
        keeps = self.journal is not None and self.source.identity is not None
        if cancelled:
            if self.config.abort_on_cancel is not None:
                return self.config.abort_on_cancel
            return not keeps
        if not keeps:
            return True
        return not is_resumable(exc)

    async def _on_failure(self, exc: BaseException) -> BaseException | None:
        """Abort or keep the upload; returns the error to raise instead of
        ``exc`` (the same kind, carrying the outcome), or None."""
        replacement: BaseException | None = None
        with anyio.CancelScope(shield=True):
            cancelled = not isinstance(exc, Exception)
            aborted = resumable = False
            completed = False
            engine = self._engine
            if self._abort_handle is not None and engine is not None:
                if self._should_abort(exc, cancelled):
                    self._aborted = False
                    await self.cleanup.run(self.config.abort_timeout)
                    aborted = self._aborted
                    if aborted and self.plan.multipart:
                        # Gone may mean completed (a cancel during Complete).
                        expected = multipart_etag([engine.parts[n] for n in sorted(engine.parts)])
                        if len(engine.parts) == self.plan.part_count and await _safe(
                            engine.object_is(self.plan.size, expected)
                        ):
                            aborted, completed = False, True
                    if self.journal is not None:
                        await self._settle_journal(delete=aborted, completed=completed)
                elif self.journal is not None:
                    resumable = await self._settle_journal(delete=False, completed=False)
                else:
                    logger.info("multipart upload %s left in place (abort_on_cancel=False)",
                                engine.upload_id)  # fmt: skip
            level = logging.DEBUG if cancelled else logging.WARNING
            logger.log(level, "upload of %s/%s %s (aborted=%s, resumable=%s)", self.target.bucket,
                       self.target.file, "cancelled" if cancelled else f"failed: {exc}", aborted,
                       resumable)  # fmt: skip
            if isinstance(exc, (S3TransferError, SourceChangedError)):
                replacement = exc.with_outcome(aborted=aborted, resumable=resumable)
            self._failed_emitted = True
            self.emitter.emit(TransferFailed(replacement or exc, cancelled, aborted, resumable))
        return replacement

    async def _settle_journal(self, *, delete: bool, completed: bool) -> bool:
        assert self.journal is not None
        try:
            if delete:
                await self.journal.save(None)
                return False
            if completed and self.journal_active:
                state = await self.journal.load()
                if state is not None:
                    state.completed = True
                    state.parts = dict(self.engine.parts)
                    await self.journal.save(state)
                return True
            await self.journal.flush()
            return self.journal_active
        except OSError as err:
            logger.warning("could not update the upload journal: %s", err)
            return False


def _with_journal_crc(listed: CompletedPart, noted: CompletedPart | None) -> CompletedPart:
    """A part ListParts showed, with the journal's CRC32C of the same part
    (same ETag) when S3 did not list one."""
    if listed.checksum_crc32c is None and noted is not None and noted.etag == listed.etag:
        return attrs.evolve(listed, checksum_crc32c=noted.checksum_crc32c)
    return listed


async def _safe(awaitable: Awaitable[bool]) -> bool:
    try:
        return await awaitable
    except Exception as exc:
        logger.debug("HEAD check failed: %s", exc)
        return False


def _short(expected: int, got: int) -> SourceChangedError:
    return SourceChangedError(f"the stream yielded {got} bytes, {expected} were announced")


async def _skip(source: PartSource, length: int, whole: Any) -> int:
    """Read ``length`` bytes without sending them (hashing them into
    ``whole`` if given); returns how many there were."""
    from .config import MiB

    left = length
    while left:
        data, got = await source.read_exact(min(left, MiB))
        if got == 0:
            break
        if whole is not None:
            await source.digest(data, None, whole)
        left -= got
    return length - left


async def drive(
    target: UploadTarget,
    source: PartSource,
    *,
    config: TransferConfig | None = None,
    progress: ProgressCallback | EventStream | None = None,
    refresh: RefreshCallable | None = None,
    journal: PartJournal | None = None,
    image_id: str | None = None,
    md5: bool = True,
    discard_journal: bool = True,
) -> TransferResult:
    """Upload ``source`` to ``target.bucket``/``target.file``: the one
    multipart driver (see the module docstring for its rules).

    ``journal``: where the multipart state is kept for a resume (None: no
    resume; a source without identity cannot resume either).
    ``discard_journal``: forget the state once the upload is complete (a
    stand-alone checkpoint); False keeps a ``completed`` record for a
    lifecycle journal that needs it until the image is verified.
    """
    config = config if config is not None else TransferConfig()
    async with source:
        driver = Driver(
            target, source, config=config, progress=progress, refresh=refresh,
            journal=journal, image_id=image_id, md5=md5, discard_journal=discard_journal,
        )  # fmt: skip
        return await driver.run()
