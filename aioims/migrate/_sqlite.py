"""SQLite plumbing of the ledger: schema, transactions, owners."""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS entries (
    entry_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    kind TEXT NOT NULL,
    source TEXT,
    fingerprint TEXT,
    stage TEXT NOT NULL DEFAULT 'pending',
    resume_stage TEXT,
    image_id TEXT,
    upload_id TEXT,
    checkpoint TEXT,
    size INTEGER,
    md5 TEXT,
    expected_md5 TEXT,
    verified INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    request_id TEXT,
    error_stage TEXT,
    owner TEXT,
    lease_until REAL,
    create_sent_at REAL,
    preexisting TEXT,
    started_at REAL,
    finished_at REAL,
    duration REAL NOT NULL DEFAULT 0,
    transfer_seconds REAL NOT NULL DEFAULT 0,
    bytes_sent INTEGER NOT NULL DEFAULT 0,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS entries_stage ON entries (stage, position);
CREATE TABLE IF NOT EXISTS parts (
    entry_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS parts_entry ON parts (entry_id);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT
);
"""


def default_owner() -> str:
    """``host:pid:random`` — unique per process, and tells whether it is alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_dead(owner: str) -> bool:
    """True when ``owner`` is a process of this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False


class immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


def create_schema(db: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
