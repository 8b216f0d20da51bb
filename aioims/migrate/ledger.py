"""The durable ledger of a migration: one SQLite file (WAL mode).

Each manifest entry has a row with its stage::

    pending -> creating -> created -> prepared -> uploading -> done-sent -> active -> verified
                                                                              (any) -> failed

(``url`` and ``shared`` entries go ``creating -> created -> active -> verified``:
the service does the copying.)  ``creating`` is written *before* the create
call, so a crash between the call and the answer is noticed: the next run
looks the image up by name instead of creating a second one.

Several workers (processes, machines sharing the file) can work on one
ledger: an entry is *claimed* in a ``BEGIN IMMEDIATE`` transaction (only one
writer at a time) by setting ``owner`` and ``lease_until``; a heartbeat
extends the leases of the entries a worker holds; every later update checks
that the worker still owns the row (else :class:`LeaseLost`).  An entry whose
lease expired — or whose owner is a dead process on this host — can be
claimed by anyone.

Every call runs in a worker thread (one at a time per ledger object): the
event loop never waits on SQLite.  Nothing secret is stored: no tokens, no
S3 credentials, no URL query strings (sources are kept as a fingerprint).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import attrs

from ._sqlite import SCHEMA_VERSION, create_schema, default_owner, immediate, owner_dead
from .manifest import Entry

__all__ = ["STAGES", "TERMINAL", "EntryState", "LeaseLost", "Ledger", "default_owner"]

T = TypeVar("T")
_PAGE = 256

STAGES = (
    "pending", "creating", "created", "prepared", "uploading", "done-sent", "active",
    "verified", "failed",
)  # fmt: skip
TERMINAL = frozenset({"verified", "failed"})

#: Columns an update may set.
_COLUMNS = frozenset(
    {
        "name", "stage", "resume_stage", "image_id", "upload_id", "checkpoint", "size", "md5",
        "expected_md5", "verified", "attempts", "error_code", "error_message", "request_id",
        "error_stage", "create_sent_at", "started_at", "finished_at", "preexisting",
    }
)  # fmt: skip


class LeaseLost(Exception):
    """Another worker took the entry over (our lease had expired)."""


@attrs.define(kw_only=True)
class EntryState:
    """A row of the ledger."""

    entry_id: str
    position: int = 0
    name: str | None = None
    kind: str = ""
    source: str | None = None
    fingerprint: str | None = None
    stage: str = "pending"
    resume_stage: str | None = None
    image_id: str | None = None
    upload_id: str | None = None
    checkpoint: str | None = None
    size: int | None = None
    md5: str | None = None
    expected_md5: str | None = None
    verified: bool = False
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    error_stage: str | None = None
    owner: str | None = None
    lease_until: float | None = None
    create_sent_at: float | None = None
    #: JSON list of the same-name image ids that existed before the create.
    preexisting: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float = 0.0
    transfer_seconds: float = 0.0
    bytes_sent: int = 0
    updated_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL


_FIELDS = [a.name for a in attrs.fields(EntryState)]


class Ledger:
    """A migration ledger (``async with Ledger(path) as ledger``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        owner: str | None = None,
        lease: float = 60.0,
        busy_timeout: float = 30.0,
    ) -> None:
        if not lease > 0:
            raise ValueError("lease must be > 0 seconds")
        self.path = Path(path)
        self.owner = owner or default_owner()
        self.lease = float(lease)
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)

    # -- plumbing --------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        """Where the transfer checkpoints of this ledger's entries live."""
        return self.path.with_name(self.path.name + ".checkpoints")

    async def _run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                if self._db is None:
                    raise RuntimeError("the ledger is not open")
                return func(self._db)

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            with immediate(db):
                create_schema(db)
                columns = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
                if "preexisting" not in columns:  # ledgers written by aioims 0.1
                    db.execute("ALTER TABLE entries ADD COLUMN preexisting TEXT")
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                    (str(SCHEMA_VERSION),),
                )
        except BaseException:
            db.close()
            raise
        os.chmod(self.path, 0o600)
        self._db = db

    async def open(self) -> Ledger:
        if self._db is None:
            await anyio.to_thread.run_sync(self._open_sync, limiter=self._limiter)
        return self

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close, limiter=self._limiter)

    async def __aenter__(self) -> Ledger:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- entries ----------------------------------------------------------------

    async def sync(self, entries: Sequence[Entry]) -> None:
        """Add the manifest's entries that the ledger does not know yet (and
        refresh position/name/fingerprint of those still pending)."""
        now = time.time()
        rows = [
            (e.id, e.index, e.name, e.kind, e.describe_source(), e.fingerprint(), e.md5, now)
            for e in entries
        ]

        def sync(db: sqlite3.Connection) -> None:
            with immediate(db):
                db.executemany(
                    "INSERT INTO entries (entry_id, position, name, kind, source, fingerprint,"
                    " expected_md5, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (entry_id) DO UPDATE SET position = excluded.position,"
                    " kind = excluded.kind, source = excluded.source,"
                    " fingerprint = excluded.fingerprint, expected_md5 = excluded.expected_md5,"
                    " name = CASE WHEN entries.stage = 'pending' THEN excluded.name"
                    " ELSE entries.name END",
                    rows,
                )

        await self._run(sync)

    async def get(self, entry_id: str) -> EntryState | None:
        def get(db: sqlite3.Connection) -> EntryState | None:
            row = db.execute("SELECT * FROM entries WHERE entry_id = ?", (entry_id,)).fetchone()
            return _state(row) if row is not None else None

        return await self._run(get)

    async def all(self, ids: Iterable[str] | None = None) -> list[EntryState]:
        """Every row (those of ``ids`` only, if given), in manifest order."""
        wanted = set(ids) if ids is not None else None

        def all_rows(db: sqlite3.Connection) -> list[EntryState]:
            rows = db.execute("SELECT * FROM entries ORDER BY position, entry_id").fetchall()
            states = [_state(r) for r in rows]
            return [s for s in states if wanted is None or s.entry_id in wanted]

        return await self._run(all_rows)

    async def claim(self, ids: Iterable[str], *, exclude: Iterable[str] = ()) -> EntryState | None:
        """Claim the first unfinished entry among ``ids`` (manifest order)
        that nobody else holds; None when there is none left."""
        wanted = set(ids) - set(exclude)
        owner, lease = self.owner, self.lease

        def claim(db: sqlite3.Connection) -> EntryState | None:
            now = time.time()
            dead: dict[str, bool] = {}
            with immediate(db):
                # Page through the unfinished rows in manifest order: the first
                # claimable one comes after the few in flight, whatever the size.
                offset = 0
                while True:
                    rows = db.execute(
                        "SELECT * FROM entries WHERE stage NOT IN ('verified', 'failed')"
                        " ORDER BY position, entry_id LIMIT ? OFFSET ?",
                        (_PAGE, offset),
                    ).fetchall()
                    for row in rows:
                        if row["entry_id"] not in wanted:
                            continue
                        holder = row["owner"]
                        if holder is not None and holder != owner and (
                                row["lease_until"] or 0) >= now:  # fmt: skip
                            if holder not in dead:
                                dead[holder] = owner_dead(holder)
                            if not dead[holder]:
                                continue
                        db.execute(
                            "UPDATE entries SET owner = ?, lease_until = ?, updated_at = ?"
                            " WHERE entry_id = ?",
                            (owner, now + lease, now, row["entry_id"]),
                        )
                        state = _state(row)
                        state.owner, state.lease_until = owner, now + lease
                        return state
                    if len(rows) < _PAGE:
                        return None
                    offset += _PAGE

        return await self._run(claim)

    async def held_elsewhere(self, ids: Iterable[str]) -> list[EntryState]:
        """Unfinished entries among ``ids`` that another live worker holds."""
        states = await self.all(ids)
        now = time.time()
        return [
            s
            for s in states
            if not s.terminal
            and s.owner not in (None, self.owner)
            and (s.lease_until or 0) >= now
            and not owner_dead(s.owner or "")
        ]

    async def heartbeat(self, ids: Iterable[str]) -> set[str]:
        """Extend the leases of ``ids``; returns those no longer ours."""
        wanted = list(ids)
        owner, lease = self.owner, self.lease

        def beat(db: sqlite3.Connection) -> set[str]:
            now = time.time()
            lost = set()
            with immediate(db):
                for entry_id in wanted:
                    cursor = db.execute(
                        "UPDATE entries SET lease_until = ? WHERE entry_id = ? AND owner = ?",
                        (now + lease, entry_id, owner),
                    )
                    if cursor.rowcount == 0:
                        lost.add(entry_id)
            return lost

        return await self._run(beat) if wanted else set()

    async def update(
        self,
        entry_id: str,
        *,
        add_duration: float = 0.0,
        add_transfer: float = 0.0,
        add_bytes: int = 0,
        release: bool = False,
        **fields: Any,
    ) -> None:
        """Set ``fields`` on an entry we own (raises :class:`LeaseLost`
        otherwise); ``add_*`` add to the time and byte counters; ``release``
        gives the entry up (clears the owner)."""
        unknown = set(fields) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown ledger column(s): {', '.join(sorted(unknown))}")
        owner = self.owner

        def update(db: sqlite3.Connection) -> None:
            now = time.time()
            sets = [f"{name} = ?" for name in fields]
            values: list[Any] = [int(v) if isinstance(v, bool) else v for v in fields.values()]
            sets += ["duration = duration + ?", "transfer_seconds = transfer_seconds + ?",
                     "bytes_sent = bytes_sent + ?", "updated_at = ?"]  # fmt: skip
            values += [add_duration, add_transfer, add_bytes, now]
            if release:
                sets += ["owner = NULL", "lease_until = NULL"]
            else:
                sets.append("lease_until = ?")
                values.append(now + self.lease)
            with immediate(db):
                cursor = db.execute(
                    f"UPDATE entries SET {', '.join(sets)} WHERE entry_id = ? AND owner = ?",  # noqa: S608 - column names from _COLUMNS
                    (*values, entry_id, owner),
                )
                if cursor.rowcount == 0:
                    raise LeaseLost(entry_id)

        await self._run(update)

    async def reset_failed(self, ids: Iterable[str]) -> int:
        """Make failed entries among ``ids`` runnable again (they continue
        from the stage they failed at; attempts start over)."""
        wanted = list(ids)

        def reset(db: sqlite3.Connection) -> int:
            count = 0
            with immediate(db):
                for entry_id in wanted:
                    cursor = db.execute(
                        "UPDATE entries SET stage = COALESCE(resume_stage, 'pending'),"
                        " resume_stage = NULL, attempts = 0, updated_at = ?"
                        " WHERE entry_id = ? AND stage = 'failed'",
                        (time.time(), entry_id),
                    )
                    count += cursor.rowcount
            return count

        return await self._run(reset)

    # -- parts and runs ----------------------------------------------------------

    async def log_parts(self, run_id: str, parts: Sequence[tuple[str, int, int]]) -> None:
        """Record finished parts ``(entry_id, part_number, size)`` of this run."""
        if not parts:
            return
        rows = [(e, n, s, run_id, time.time()) for e, n, s in parts]

        def log(db: sqlite3.Connection) -> None:
            with immediate(db):
                db.executemany(
                    "INSERT INTO parts (entry_id, part_number, size, run_id, at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

        await self._run(log)

    async def parts(self, entry_id: str | None = None) -> list[tuple[str, int, int, str]]:
        """``(entry_id, part_number, size, run_id)`` of every part logged."""

        def parts(db: sqlite3.Connection) -> list[tuple[str, int, int, str]]:
            query = "SELECT entry_id, part_number, size, run_id FROM parts"
            args: tuple[Any, ...] = ()
            if entry_id is not None:
                query += " WHERE entry_id = ?"
                args = (entry_id,)
            rows = db.execute(query + " ORDER BY rowid", args).fetchall()
            return [(r[0], r[1], r[2], r[3]) for r in rows]

        return await self._run(parts)

    async def start_run(self, run_id: str) -> None:
        def start(db: sqlite3.Connection) -> None:
            with immediate(db):
                db.execute(
                    "INSERT INTO runs (run_id, owner, started_at, status) VALUES (?, ?, ?, ?)",
                    (run_id, self.owner, time.time(), "running"),
                )

        await self._run(start)

    async def finish_run(self, run_id: str, status: str) -> None:
        def finish(db: sqlite3.Connection) -> None:
            with immediate(db):
                db.execute(
                    "UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?",
                    (time.time(), status, run_id),
                )
                # Give up whatever this worker still holds (e.g. after Ctrl-C).
                db.execute(
                    "UPDATE entries SET owner = NULL, lease_until = NULL WHERE owner = ?",
                    (self.owner,),
                )

        with anyio.CancelScope(shield=True):
            await self._run(finish)


def _state(row: sqlite3.Row) -> EntryState:
    data = {key: row[key] for key in row.keys() if key in _FIELDS}  # noqa: SIM118 - sqlite3.Row
    data["verified"] = bool(data.get("verified"))
    return EntryState(**data)
