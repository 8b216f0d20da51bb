"""The report of a migration run: one row per entry, from the ledger.

``report.to_json()`` is what ``aioims migrate`` writes to the report file
(and prints with ``--json``); :meth:`Report.rows` feeds the terminal table.
No secrets: sources are shown without URL query strings, tokens never appear.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs

from .ledger import EntryState

__all__ = ["EntryResult", "Report", "write_report"]

#: Entry statuses in a report.
STATUSES = ("verified", "active", "failed", "pending", "in-progress", "released")


@attrs.frozen(kw_only=True)
class EntryResult:
    entry_id: str
    name: str | None
    kind: str
    source: str | None
    #: verified | active (done, not verified) | failed | pending (not
    #: started) | in-progress (held by another worker, or stopped part-way)
    #: | released (this run gave it up)
    status: str
    stage: str
    image_id: str | None = None
    size: int | None = None
    md5: str | None = None
    duration: float | None = None
    rate: float | None = None
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    error_stage: str | None = None
    #: True when this run did the work (False: finished by an earlier run).
    this_run: bool = False

    @classmethod
    def from_state(cls, state: EntryState, *, this_run: bool = False,
                   status: str | None = None) -> EntryResult:  # fmt: skip
        if status is None:
            if state.stage == "verified":
                status = "verified" if state.verified else "active"
            elif state.stage == "failed":
                status = "failed"
            elif state.stage == "pending" and state.owner is None:
                status = "pending"
            else:
                status = "in-progress"
        # Upload kinds: bytes this process sent / time spent sending them
        # (a resumed upload does not count the parts an earlier run sent);
        # url/shared: the image size / time the service took.
        moved = state.bytes_sent if state.kind in ("file", "ims") else state.size
        seconds = state.transfer_seconds or None
        rate = moved / seconds if moved and seconds else None
        return cls(
            entry_id=state.entry_id, name=state.name, kind=state.kind, source=state.source,
            status=status, stage=state.stage, image_id=state.image_id, size=state.size,
            md5=state.md5, duration=round(state.duration, 3) if state.duration else None,
            rate=round(rate, 1) if rate else None, attempts=state.attempts,
            error_code=state.error_code if status == "failed" else None,
            error_message=state.error_message if status == "failed" else None,
            request_id=state.request_id if status == "failed" else None,
            error_stage=state.error_stage if status == "failed" else None,
            this_run=this_run,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        return {_camel(k): v for k, v in data.items()}


@attrs.frozen(kw_only=True)
class Report:
    run_id: str
    owner: str
    started_at: float
    finished_at: float
    entries: list[EntryResult]
    max_images_in_flight: int = 0
    max_parts_in_flight: int = 0
    images_limit: int = 0
    parts_limit: int = 0
    bytes_uploaded: int = 0
    cancelled: bool = False

    @property
    def duration(self) -> float:
        return max(self.finished_at - self.started_at, 0.0)

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e.status == status)

    @property
    def failed(self) -> list[EntryResult]:
        return [e for e in self.entries if e.status == "failed"]

    @property
    def ok(self) -> bool:
        """Every entry verified (or active, when verification was off)."""
        return all(e.status in ("verified", "active") for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        counts = {s: self.count(s) for s in STATUSES}
        return {
            "runId": self.run_id,
            "owner": self.owner,
            "startedAt": _iso(self.started_at),
            "finishedAt": _iso(self.finished_at),
            "seconds": round(self.duration, 3),
            "ok": self.ok,
            "cancelled": self.cancelled,
            "counts": {k: v for k, v in counts.items() if v},
            "bytesUploaded": self.bytes_uploaded,
            "bytesPerSecond": round(self.bytes_uploaded / self.duration, 1)
            if self.duration > 0 else None,
            "budget": {
                "images": self.images_limit,
                "parts": self.parts_limit,
                "maxImagesInFlight": self.max_images_in_flight,
                "maxPartsInFlight": self.max_parts_in_flight,
            },
            "entries": [e.to_json() for e in self.entries],
        }  # fmt: skip

    def rows(self) -> list[list[str]]:
        """Table rows: id, name, status, image id, size, MD5, time, rate, error."""
        out = []
        for e in self.entries:
            error = ""
            if e.status == "failed":
                error = " ".join(
                    p for p in (e.error_code, f"(request {e.request_id})" if e.request_id else "")
                    if p
                ) or (e.error_message or "")[:60]
            out.append([
                e.entry_id, e.name or "", e.status, e.image_id or "", _size(e.size),
                e.md5 or "", f"{e.duration:.1f}s" if e.duration else "",
                f"{_size(e.rate)}/s" if e.rate else "", error,
            ])  # fmt: skip
        return out

    @staticmethod
    def columns() -> Sequence[str]:
        return ("entry", "name", "status", "image", "size", "md5", "time", "rate", "error")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _size(num: float | None) -> str:
    if num is None:
        return ""
    value = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


async def write_report(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write the JSON report (atomically, off the event loop)."""
    target = Path(path)
    text = json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    await anyio.to_thread.run_sync(_write, target, text)
    return target
