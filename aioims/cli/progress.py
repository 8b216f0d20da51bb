"""Progress display for uploads and downloads.

Three modes:

* ``bar``   -- rich bars on stderr: bytes, rate and ETA per image, plus an
  "overall" bar when several images move at once;
* ``plain`` -- one line per notable event on stderr (start, each part done,
  retries, credential refreshes, status changes, completion): CI logs;
* ``none``  -- nothing.

``auto`` (the default) is ``bar`` when stdout *and* stderr are terminals and
``none`` otherwise; ``--quiet`` forces ``none``.

Bars are fed from the uploader's progress events (:mod:`aioims.transfer.events`,
matched by class name so the display tolerates new event types) or from the
download progress callback (``(bytes_done, total)`` or an event).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text

from .output import human_size

MODES = ("auto", "bar", "plain", "none")


def _average_rate(task: Task) -> float | None:
    """Bytes/s since the transfer started (parts land in big steps, so an
    average is steadier than rich's windowed estimate); resumed bytes excluded."""
    elapsed = task.elapsed or 0.0
    done = task.completed - float(task.fields.get("base", 0))
    if elapsed <= 0.05 or done <= 0:
        return None
    return done / elapsed


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = _average_rate(task)
        text = "?" if rate is None else f"{human_size(rate)}/s"
        return Text(f"{text:>11}", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left at the average rate, or the elapsed time once finished."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text(_clock(task.elapsed or 0), style="progress.elapsed")
        rate = _average_rate(task)
        if rate is None or task.total is None:
            return Text("-:--:--", style="progress.remaining")
        return Text(_clock((task.total - task.completed) / rate), style="progress.remaining")


def _clock(seconds: float) -> str:
    whole = int(max(seconds, 0))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def pick_mode(requested: str, *, quiet: bool) -> str:
    if quiet:
        return "none"
    if requested != "auto":
        return requested
    return "bar" if sys.stdout.isatty() and sys.stderr.isatty() else "none"


class ProgressBoard:
    """A set of transfer bars (context manager); :meth:`track` makes one."""

    def __init__(self, mode: str, *, console: Console | None = None) -> None:
        self.mode = mode
        self.console = console or Console(file=sys.stderr)
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._trackers: list[Tracker] = []
        if mode == "bar":
            self._progress = Progress(
                TextColumn("[bold]{task.description}", justify="left"),
                BarColumn(bar_width=None),
                DownloadColumn(binary_units=True),
                RateColumn(),
                EtaColumn(),
                console=self.console,
                transient=False,
                refresh_per_second=5,
            )

    def __enter__(self) -> ProgressBoard:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def enable_overall(self, total: int | None, label: str = "overall") -> None:
        if self._progress is not None and self._overall is None:
            self._overall = self._progress.add_task(label, total=total or None)

    def track(self, label: str, total: int | None = None) -> Tracker:
        task = None
        if self._progress is not None:
            task = self._progress.add_task(label, total=total or None)
        tracker = Tracker(self, label, task, total)
        self._trackers.append(tracker)
        return tracker

    def line(self, text: str) -> None:
        if self.mode == "plain":
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        elif self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)

    # called by trackers
    def _restart(self, tracker: Tracker, done: int) -> None:
        """The transfer proper starts now (after create/prepare): time from here."""
        if self._progress is not None and tracker.task is not None:
            self._progress.reset(tracker.task, start=True, completed=done,
                                 total=tracker.total or None, base=done)

    def _finish(self, tracker: Tracker) -> None:
        if self._progress is not None and tracker.task is not None:
            self._progress.stop_task(tracker.task)

    def _advance(self, tracker: Tracker, delta: int, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        if tracker.task is not None:
            self._progress.update(tracker.task, completed=done, total=total or None)
        if self._overall is not None:
            totals = [t.total for t in self._trackers]
            overall_total = sum(t for t in totals if t) or None
            self._progress.update(self._overall, advance=delta, total=overall_total)


class Tracker:
    """The progress of one transfer; accepts events and byte counts."""

    def __init__(self, board: ProgressBoard, label: str, task: TaskID | None,
                 total: int | None) -> None:
        self.board = board
        self.label = label
        self.task = task
        self.total = total
        self.done = 0
        self.parts_done = 0
        self.image_id: str | None = None
        self.last_status: str | None = None
        self.failure: Any = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self._last_plain = 0.0

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 1e-9)

    def _plain(self, text: str) -> None:
        if self.board.mode == "plain":
            self.board.line(f"[{self.label}] {text}")

    def bytes(self, done: int, total: int | None = None) -> None:
        if total:
            self.total = total
        delta = max(done - self.done, 0)
        self.done = done
        self.board._advance(self, delta, done, self.total)
        now = time.monotonic()
        if self.board.mode == "plain" and now - self._last_plain >= 2.0:
            self._last_plain = now
            self._plain(f"{human_size(done)} / {human_size(self.total)}")

    def __call__(self, *args: Any) -> None:
        """Progress callback: ``(event)`` or ``(bytes_done, total)`` / ``(bytes_done,)``."""
        if args and isinstance(args[0], int) and not isinstance(args[0], bool):
            total = args[1] if len(args) > 1 and isinstance(args[1], int) else None
            self.bytes(args[0], total)
            return
        if len(args) == 1:
            self.event(args[0])

    def event(self, event: Any) -> None:
        name = type(event).__name__
        image_id = getattr(event, "image_id", None)
        if isinstance(image_id, str) and image_id and image_id != self.image_id:
            self.image_id = image_id
            if name == "StatusChanged":
                self.board.line(f"[{self.label}] image {image_id}")
        total = getattr(event, "total_bytes", None)
        if isinstance(total, int) and total > 0:
            self.total = total
        if name in ("TransferStarted", "DownloadStarted"):
            self.started = time.monotonic()
            resumed = getattr(event, "resumed_bytes", 0) or 0
            parts = getattr(event, "part_count", None)
            self._plain(f"transfer started: {human_size(self.total)}"
                        + (f" in {parts} part(s)" if parts else "")
                        + (f", resuming at {human_size(resumed)}" if resumed else ""))
            start = resumed if isinstance(resumed, int) else 0
            delta, self.done = start - self.done, start
            self.board._restart(self, start)
            self.board._advance(self, delta, start, self.total)
        elif name in ("BytesSent", "BytesReceived"):
            done = getattr(event, "bytes_sent_total", None)
            if done is None:
                done = getattr(event, "bytes_received_total", None)
            if isinstance(done, int):
                self.bytes(done, self.total)
        elif name == "PartDone":
            self.parts_done += 1
            number = getattr(event, "part_number", "?")
            self._plain(f"part {number} done ({self.parts_done} part(s) this run)")
        elif name == "PartRetried":
            number = getattr(event, "part_number", "?")
            error = getattr(event, "error", "")
            self.board.line(f"[{self.label}] retrying part {number}: {error}")
        elif name == "CredentialsRefreshed":
            self._plain("upload credentials refreshed")
        elif name == "StatusChanged":
            status = str(getattr(event, "status", ""))
            if status != self.last_status:
                self.last_status = status
                self._plain(f"status: {status}")
        elif name in ("TransferCompleted", "DownloadCompleted"):
            self.finished = time.monotonic()
            if self.total:
                self.bytes(self.total, self.total)
            self.board._finish(self)
            self._plain(f"transfer completed in {self.elapsed:.1f} s")
        elif name == "TransferFailed":
            self.failure = event
            how = ("cancelled" if getattr(event, "cancelled", False) else "failed")
            kept = ("; parts kept for --resume" if getattr(event, "resumable", False)
                    else "; multipart upload aborted" if getattr(event, "aborted", False)
                    else "")
            self._plain(f"transfer {how}{kept}")

    def complete(self) -> None:
        if self.finished is None:
            self.finished = time.monotonic()
        if self.total:
            self.bytes(self.total, self.total)
        self.board._finish(self)
