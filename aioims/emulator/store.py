"""Image, share and user records in SQLite (stdlib ``sqlite3``).

One connection, used from worker threads one call at a time (an anyio
capacity limiter of 1 plus a lock), so the event loop never blocks on disk.
Each public coroutine is one transaction.  WAL journal: a committed record
survives a crash of the emulator.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import attrs

from ..models import Image, from_wire, to_wire
from .identity import User, user_from_json

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    status TEXT NOT NULL,
    visibility TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    size INTEGER,
    prepared_size INTEGER,
    bucket TEXT NOT NULL DEFAULT '',
    object_key TEXT NOT NULL DEFAULT '',
    job TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS images_tenant ON images (tenant_id, status);
CREATE TABLE IF NOT EXISTS shares (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    share_id TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (image_id, user_id)
);
CREATE INDEX IF NOT EXISTS shares_user ON shares (user_id);
CREATE TABLE IF NOT EXISTS users (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    data TEXT NOT NULL
);
"""

_COLUMNS = "id, image_id, prepared_size, bucket, object_key, job, data"
_SHARED = "EXISTS (SELECT 1 FROM shares s WHERE s.image_id = images.image_id) AS shared"

#: filter field -> SQL expression over the images table
_FILTER_SQL = {
    "name": "name",
    "imageId": "image_id",
    "status": "status",
    "visibility": "visibility",
}
_ORDER_SQL = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "name": "name",
    "size": "size",
    "id": "id",
    "imageId": "image_id",
    "status": "status",
    "shareId": "share_id",
    "userId": "user_id",
}


@attrs.define(kw_only=True)
class ImageRecord:
    """An image plus what only the emulator knows about it."""

    image: Image
    row_id: int | None = None
    prepared_size: int | None = None
    bucket: str = ""
    object_key: str = ""
    job: str = ""  # background job while saving: verify, import or copy
    shared: bool = False

    @property
    def image_id(self) -> str:
        return self.image.image_id

    @property
    def tenant_id(self) -> str:
        return self.image.owner or ""

    @property
    def status(self) -> str:
        return str(self.image.status.value) if self.image.status is not None else ""


@attrs.frozen(kw_only=True)
class ShareRecord:
    row_id: int
    share_id: str
    image_id: str
    user_id: str
    user_name: str
    created_at: str
    updated_at: str


@attrs.frozen(kw_only=True)
class ImageQuery:
    """Which images a list call sees."""

    tenant_id: str
    include_public: bool = False
    clauses: Sequence[tuple[str, str, str]] = ()
    order: Sequence[tuple[str, bool]] = ()
    offset: int = 0
    limit: int = 10


def _filter_sql(field: str) -> str:
    column = _FILTER_SQL.get(field)
    if column is not None:
        return column
    return f"json_extract(data, '$.{field}')"  # field names are whitelisted by validation


def _order_sql(order: Sequence[tuple[str, bool]], default: str) -> str:
    if not order:
        return default
    parts = [f"{_ORDER_SQL[field]} {'DESC' if desc else 'ASC'}" for field, desc in order]
    return ", ".join([*parts, "id DESC"])


def _image_row(row: sqlite3.Row) -> ImageRecord:
    image = from_wire(json.loads(row["data"]), Image)
    image.id = row["id"]
    return ImageRecord(
        image=image,
        row_id=row["id"],
        prepared_size=row["prepared_size"],
        bucket=row["bucket"],
        object_key=row["object_key"],
        job=row["job"],
        shared=bool(row["shared"]),
    )


def _share_row(row: sqlite3.Row) -> ShareRecord:
    return ShareRecord(
        row_id=row["id"],
        share_id=row["share_id"],
        image_id=row["image_id"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _image_values(record: ImageRecord) -> dict[str, Any]:
    image = record.image
    data = to_wire(image)
    data.pop("id", None)
    data.pop("shared", None)
    return {
        "image_id": image.image_id,
        "tenant_id": image.owner or "",
        "status": record.status,
        "visibility": str(image.visibility.value) if image.visibility else "private",
        "name": image.name,
        "created_at": data.get("createdAt") or "",
        "updated_at": data.get("updatedAt") or "",
        "size": image.size,
        "prepared_size": record.prepared_size,
        "bucket": record.bucket,
        "object_key": record.object_key,
        "job": record.job,
        "data": json.dumps(data, ensure_ascii=False),
    }


class Store:
    """The emulator's database (``<data_dir>/ims.sqlite3``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)

    # --- plumbing ---------------------------------------------------------

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open_sync, limiter=self._limiter)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await anyio.to_thread.run_sync(self._close_sync, limiter=self._limiter)

    def _close_sync(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run *fn* in one transaction on the worker thread."""
        return await anyio.to_thread.run_sync(
            functools.partial(self._transaction, fn), limiter=self._limiter
        )

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise RuntimeError("store is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    # --- images -------------------------------------------------------------

    async def insert_image(self, record: ImageRecord) -> ImageRecord:
        values = _image_values(record)

        def insert(conn: sqlite3.Connection) -> int:
            names = ", ".join(values)
            marks = ", ".join(f":{k}" for k in values)
            cursor = conn.execute(f"INSERT INTO images ({names}) VALUES ({marks})", values)  # noqa: S608
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        record.row_id = await self._run(insert)
        record.image.id = record.row_id
        return record

    async def save_image(self, record: ImageRecord) -> None:
        values = _image_values(record)

        def update(conn: sqlite3.Connection) -> None:
            sets = ", ".join(f"{k} = :{k}" for k in values if k != "image_id")
            conn.execute(f"UPDATE images SET {sets} WHERE image_id = :image_id", values)  # noqa: S608

        await self._run(update)

    async def get_image(self, image_id: str) -> ImageRecord | None:
        def get(conn: sqlite3.Connection) -> ImageRecord | None:
            row = conn.execute(
                f"SELECT {_COLUMNS}, {_SHARED} FROM images WHERE image_id = ?",  # noqa: S608
                (image_id,),
            ).fetchone()
            return None if row is None else _image_row(row)

        return await self._run(get)

    async def list_images(self, query: ImageQuery) -> tuple[int, list[ImageRecord]]:
        where = ["status != 'deleted'"]
        params: list[Any] = []
        if query.include_public:
            where.append("(tenant_id = ? OR visibility = 'public')")
        else:
            where.append("tenant_id = ?")
        params.append(query.tenant_id)
        for field, op, value in query.clauses:
            expr = _filter_sql(field)
            if op == "eq":
                where.append(f"{expr} = ?")
                params.append(value)
            else:
                where.append(f"instr(lower(coalesce({expr}, '')), lower(?)) > 0")
                params.append(value)
        condition = " AND ".join(where)
        order = _order_sql(query.order, "created_at DESC, id DESC")

        def run(conn: sqlite3.Connection) -> tuple[int, list[ImageRecord]]:
            count_sql = f"SELECT count(*) FROM images WHERE {condition}"  # noqa: S608
            total = conn.execute(count_sql, params).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_COLUMNS}, {_SHARED} FROM images WHERE {condition} "  # noqa: S608
                f"ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
            return int(total), [_image_row(row) for row in rows]

        return await self._run(run)

    async def images_in_status(self, *statuses: str) -> list[ImageRecord]:
        marks = ", ".join("?" for _ in statuses)

        def run(conn: sqlite3.Connection) -> list[ImageRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS}, {_SHARED} FROM images WHERE status IN ({marks}) "  # noqa: S608
                "ORDER BY id",
                statuses,
            ).fetchall()
            return [_image_row(row) for row in rows]

        return await self._run(run)

    async def status_counts(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT status, count(*) FROM images GROUP BY status").fetchall()
            return {row[0]: int(row[1]) for row in rows}

        return await self._run(run)

    # --- shares ---------------------------------------------------------------

    async def add_shares(self, shares: Iterable[ShareRecord]) -> None:
        rows = [attrs.asdict(share) for share in shares]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO shares (share_id, image_id, user_id, user_name, created_at, "
                "updated_at) VALUES (:share_id, :image_id, :user_id, :user_name, :created_at, "
                ":updated_at)",
                rows,
            )

        await self._run(run)

    async def remove_shares(self, image_id: str, user_ids: Iterable[str]) -> None:
        params = [(image_id, user_id) for user_id in user_ids]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM shares WHERE image_id = ? AND user_id = ?", params)

        await self._run(run)

    async def share_user_ids(self, image_id: str) -> set[str]:
        def run(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute("SELECT user_id FROM shares WHERE image_id = ?", (image_id,))
            return {row[0] for row in rows}

        return await self._run(run)

    async def get_share(self, share_id: str) -> ShareRecord | None:
        def run(conn: sqlite3.Connection) -> ShareRecord | None:
            row = conn.execute("SELECT * FROM shares WHERE share_id = ?", (share_id,)).fetchone()
            return None if row is None else _share_row(row)

        return await self._run(run)

    async def delete_share(self, share_id: str) -> None:
        await self._run(lambda c: c.execute("DELETE FROM shares WHERE share_id = ?", (share_id,)))

    async def list_shares(
        self,
        *,
        image_id: str | None = None,
        user_id: str | None = None,
        order: Sequence[tuple[str, bool]] = (),
        offset: int = 0,
        limit: int = 10,
    ) -> tuple[int, list[ShareRecord]]:
        """Shares of one image, or shares made to one user (of live images)."""
        where = ["image_id IN (SELECT image_id FROM images WHERE status != 'deleted')"]
        params: list[Any] = []
        if image_id is not None:
            where.append("image_id = ?")
            params.append(image_id)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        condition = " AND ".join(where)
        order_sql = _order_sql(order, "created_at DESC, id DESC")

        def run(conn: sqlite3.Connection) -> tuple[int, list[ShareRecord]]:
            count_sql = f"SELECT count(*) FROM shares WHERE {condition}"  # noqa: S608
            total = conn.execute(count_sql, params).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM shares WHERE {condition} ORDER BY {order_sql} "  # noqa: S608
                "LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            return int(total), [_share_row(row) for row in rows]

        return await self._run(run)

    async def share_count(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM shares").fetchone()[0])

        return await self._run(run)

    # --- users ------------------------------------------------------------------

    async def upsert_users(self, users: Iterable[User]) -> None:
        rows = [(u.token, u.user_id, json.dumps(u.to_json())) for u in users]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO users (token, user_id, data) VALUES (?, ?, ?) "
                "ON CONFLICT (token) DO UPDATE SET user_id = excluded.user_id, "
                "data = excluded.data",
                rows,
            )

        await self._run(run)

    async def reset(self, users: Iterable[User]) -> None:
        """Delete every image, share and user (row ids start again at 1), then
        store these users: one transaction."""
        rows = [(u.token, u.user_id, json.dumps(u.to_json())) for u in users]

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM images")
            conn.execute("DELETE FROM shares")
            conn.execute("DELETE FROM users")
            conn.execute(
                "DELETE FROM sqlite_sequence WHERE name IN ('images', 'shares')"
            )
            conn.executemany("INSERT INTO users (token, user_id, data) VALUES (?, ?, ?)", rows)

        await self._run(run)

    async def load_users(self) -> list[User]:
        def run(conn: sqlite3.Connection) -> list[User]:
            rows = conn.execute("SELECT data FROM users ORDER BY rowid").fetchall()
            return [user_from_json(json.loads(row[0])) for row in rows]

        return await self._run(run)
