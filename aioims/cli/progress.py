"""Progress display for uploads and downloads.

Three modes:

* ``bar``   -- one line per image on stderr, redrawn in place: the stage of
  the image with the time spent in it (``creating``, ``preparing``,
  ``uploading``, ``saving``, ``verifying``, ``active``), a bar, percent,
  bytes, rate and ETA; plus a ``total`` line when several files move, whose
  total is the sum of every file's size, known before the first byte;
* ``plain`` -- one line per notable event on stderr (stage changes, start,
  each part done, retries, credential refreshes, completion): CI logs;
* ``none``  -- nothing.

``auto`` (the default) is ``bar`` when stdout *and* stderr are terminals and
``none`` otherwise; ``--quiet`` forces ``none``.

Trackers are fed from the uploader's progress events
(:mod:`aioims.transfer.events`, matched by class name so the display
tolerates new event types): ``StageChanged`` sets the stage (older
coordinators without it: the stage is inferred from ``StatusChanged`` and
the transfer events), ``BytesSent`` moves the bar at byte granularity; or from
the download progress callback (``(bytes_done, total)`` or an event).

**One rate** everywhere (bar, ``total`` line, summaries, ``X in Y s``):
:func:`rate` = bytes moved *in this run* (resumed bytes excluded) divided by
the wall time from the start of the transfer to its last byte (or to now).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.progress import ProgressColumn, Task
from rich.text import Text

from .output import human_size

MODES = ("auto", "bar", "plain", "none")
#: stages after which nothing moves any more
FINAL_STAGES = ("active", "done", "failed", "interrupted")
BAR_DONE, BAR_LEFT = "━", "─"


def rate(moved_bytes: float, seconds: float) -> float | None:
    """The CLI's one rate: bytes moved in this run / the seconds they took."""
    if seconds <= 0 or moved_bytes <= 0:
        return None
    return moved_bytes / seconds


def human_rate_of(value: float | None) -> str:
    return "-" if value is None else f"{human_size(value)}/s"


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from one hour)."""
    whole = int(max(seconds, 0))
    if whole >= 3600:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


def pick_mode(requested: str, *, quiet: bool) -> str:
    if quiet:
        return "none"
    if requested != "auto":
        return requested
    return "bar" if sys.stdout.isatty() and sys.stderr.isatty() else "none"


def _pair(done: int, total: int | None) -> str:
    """``3.0/6.0 MiB`` (``done`` in the unit of ``total``)."""
    if not total:
        return human_size(done)
    text = human_size(total)
    number, _, unit = text.partition(" ")
    scale = total / float(number) if float(number) else 1.0
    shown = f"{done / scale:.1f}" if unit != "B" else str(done)
    return f"{shown}/{number} {unit}"


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


class ProgressBoard:
    """The progress lines of one command (context manager); :meth:`track`
    adds a transfer.  ``clock`` and ``auto_refresh`` are for tests, which
    render frames with :meth:`frame`."""

    def __init__(self, mode: str, *, console: Console | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 auto_refresh: bool = True) -> None:
        self.mode = mode
        self.console = console or Console(file=sys.stderr)
        self.clock = clock
        self.trackers: list[Tracker] = []
        self.overall_total: int | None = None
        self.overall_label = "total"
        self.files = 0
        self.interrupted = False
        self._auto_refresh = auto_refresh
        self._live: Live | None = None

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> ProgressBoard:
        if self.mode == "bar":
            self._live = Live(self, console=self.console, auto_refresh=self._auto_refresh,
                              refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and _is_interrupt(exc):
            self.interrupt()
        if self._live is not None:
            self._live.stop()  # one last frame, drawn in place: once
            self._live = None

    def interrupt(self) -> None:
        """Ctrl-C: every unfinished line says ``interrupted``."""
        self.interrupted = True
        for tracker in self.trackers:
            if tracker.stage not in FINAL_STAGES:
                tracker.set_stage("interrupted")

    def refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def enable_overall(self, total: int | None, label: str = "total", files: int = 0) -> None:
        """A ``total`` line over ``files`` transfers of ``total`` bytes in
        all, both known before the first one starts (right ETA from the start)."""
        self.overall_total = total or None
        self.overall_label = label
        self.files = files

    def track(self, label: str, total: int | None = None, *, kind: str = "upload") -> Tracker:
        tracker = Tracker(self, label, total, kind=kind)
        self.trackers.append(tracker)
        return tracker

    def line(self, text: str) -> None:
        if self.mode == "plain":
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        elif self.mode == "bar":
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    # -- the overall numbers ---------------------------------------------------
    def overall(self) -> tuple[int, int | None, float | None]:
        """(bytes done, total, rate) over every tracker."""
        done = sum(t.done for t in self.trackers)
        moved = sum(t.sent for t in self.trackers)
        starts = [t.transfer_started for t in self.trackers if t.transfer_started is not None]
        if not starts:
            return done, self.overall_total, None
        ends = [t.transfer_ended for t in self.trackers]
        running = any(e is None for e in ends) or len(ends) < _files(self)
        end = self.clock() if running else max(e for e in ends if e is not None)
        return done, self.overall_total, rate(moved, end - min(starts))

    # -- rendering -------------------------------------------------------------
    def frame(self, width: int) -> list[str]:
        """The lines of the display at ``width`` columns (plain text)."""
        return [text.plain for text in self._lines(width)]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self._lines(options.max_width)

    def _lines(self, width: int) -> list[Text]:
        rows = [t.fields() for t in self.trackers]
        if self.overall_total is not None and _files(self) > 1:
            done, total, speed = self.overall()
            finished = sum(1 for t in self.trackers if t.stage in ("active", "done"))
            eta = None
            if speed and total is not None and not self.interrupted:
                eta = f"eta {clock((total - done) / speed)}" if done < total else None
            rows.append({"label": f"{self.overall_label}", "stage": f"{finished}/{_files(self)}"
                         " done", "done": done, "total": total, "rate": speed, "eta": eta,
                         "style": "bold", "live": not self.interrupted and any(
                             r["live"] for r in rows)})
        return _layout(rows, width)


def _files(board: ProgressBoard) -> int:
    return max(board.files, len(board.trackers))


def _is_interrupt(exc: BaseException) -> bool:
    import asyncio

    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return True
    inner = getattr(exc, "exceptions", None)
    return isinstance(inner, tuple) and any(_is_interrupt(e) for e in inner)


def _layout(rows: list[dict[str, Any]], width: int) -> list[Text]:
    """Lay the rows out in aligned fields that fit ``width``: label, stage,
    bar, percent, bytes, rate, ETA; the least useful fields go first when the
    line is too narrow (bar, then ETA, rate, bytes), a label is shortened."""
    if not rows:
        return []
    cells = []
    for row in rows:
        total, done = row["total"], row["done"]
        pct = f"{min(done / total, 1.0) * 100:3.0f}%" if total else ""
        cells.append({
            "label": row["label"], "stage": row["stage"], "pct": pct,
            "size": _pair(done, total), "rate": human_rate_of(row["rate"])
            if row["rate"] else "", "eta": row["eta"] or "",
        })
    widths = {k: max(len(c[k]) for c in cells) for k in cells[0]}
    # fixed widths while anything moves: the bar does not jitter as numbers grow
    live = any(row.get("live") for row in rows)
    widths["label"] = min(widths["label"], 24 if width >= 100 else 16 if width >= 70 else 12)
    widths["stage"] = max(widths["stage"], 14)
    widths["pct"] = max(widths["pct"], 4) if any(r["total"] for r in rows) else 0
    widths["size"] = max([widths["size"], *(len(_pair(r["total"], r["total"]))
                                            for r in rows if r["total"])])
    if live:
        widths["rate"] = max(widths["rate"], 10)
        widths["eta"] = max(widths["eta"], 9)
    order = ["label", "stage", "pct", "size", "rate", "eta"]
    shown = list(order)
    min_bar = 8

    def used(keys: Iterable[str]) -> int:
        keys = [k for k in keys if widths[k]]
        return sum(widths[k] for k in keys) + max(len(keys) - 1, 0)

    bar = width - used(shown) - 1
    if bar < min_bar:  # no room for a bar: drop it, then what is needed
        bar = 0
        for drop in ("eta", "rate", "size"):
            if used(shown) <= width:
                break
            shown.remove(drop)
    if used(shown) > width:  # only the label can still give
        widths["label"] = max(width - used([k for k in shown if k != "label"]) - 1, 4)
    lines = []
    for row, cell in zip(rows, cells, strict=True):
        text = Text(style=row.get("style", ""))
        parts: list[tuple[str, str]] = []
        for key in ("label", "stage"):
            if key in shown and widths[key]:
                parts.append((_fit(cell[key], widths[key]).ljust(widths[key]),
                              "bold" if key == "label" else "cyan"))
        if bar:
            total, done = row["total"], row["done"]
            filled = int(bar * min(done / total, 1.0)) if total else 0
            parts.append((BAR_DONE * filled, "magenta"))
            parts.append((BAR_LEFT * (bar - filled), "grey37"))
        for key in ("pct", "size", "rate", "eta"):
            if key in shown and widths[key]:
                parts.append((cell[key].rjust(widths[key]), ""))
        first = True
        for index, (chunk, style) in enumerate(parts):
            glued = index > 0 and parts[index - 1][1] == "magenta" and style == "grey37"
            if not first and not glued:
                text.append(" ")
            text.append(chunk, style=style)
            first = False
        text.rstrip()
        lines.append(text)
    return lines


class Tracker:
    """The progress of one transfer; accepts events and byte counts."""

    def __init__(self, board: ProgressBoard, label: str, total: int | None,
                 kind: str = "upload") -> None:
        self.board = board
        self.label = label
        self.total = total
        self.kind = kind
        self.done = 0
        self.base = 0  # bytes already there before this run (resumed)
        self.parts_done = 0
        self.image_id: str | None = None
        self.last_status: str | None = None
        self.failure: Any = None
        now = board.clock()
        self.started = now
        self.finished: float | None = None
        self.stage = "creating" if kind == "upload" else "downloading"
        self.stage_started = now
        #: the last stage before a final one (where an interruption hit)
        self.last_working_stage = self.stage
        self.transfer_started: float | None = now if kind == "download" else None
        self.transfer_ended: float | None = None
        self.all_sent_at: float | None = None
        self._explicit_stages = False
        self._last_plain = 0.0

    # -- numbers ---------------------------------------------------------------
    @property
    def sent(self) -> int:
        """Bytes moved in this run (resumed ones excluded)."""
        return max(self.done - self.base, 0)

    @property
    def transfer_seconds(self) -> float:
        if self.transfer_started is None:
            return 0.0
        # the time of the last byte (completing the upload is not moving bytes)
        end = self.all_sent_at if self.all_sent_at is not None else self.transfer_ended
        if end is None:
            end = self.board.clock()
        return max(end - self.transfer_started, 0.0)

    @property
    def rate(self) -> float | None:
        return rate(self.sent, self.transfer_seconds)

    @property
    def elapsed(self) -> float:
        """Seconds from the start to the end (or now): every stage."""
        end = self.finished if self.finished is not None else self.board.clock()
        return max(end - self.started, 1e-9)

    def fields(self) -> dict[str, Any]:
        now = self.board.clock()
        if self.stage in FINAL_STAGES:
            stage = (f"{self.stage} {clock(self.elapsed)}"
                     if self.stage in ("active", "done") else self.stage)
        else:
            stage = f"{self.stage} {clock(now - self.stage_started)}"
        eta = None
        speed = self.rate
        if (self.stage in ("uploading", "downloading") and speed and self.total
                and self.done < self.total):
            eta = f"eta {clock(max(self.total - self.done, 0) / speed)}"
        return {"label": self.label, "stage": stage, "done": self.done, "total": self.total,
                "rate": speed, "eta": eta, "live": self.stage not in FINAL_STAGES}

    # -- stage -----------------------------------------------------------------
    def set_stage(self, stage: str) -> None:
        if stage == self.stage or not stage:
            return
        previous, now = self.stage, self.board.clock()
        took = now - self.stage_started
        if previous not in FINAL_STAGES:
            self.last_working_stage = previous
        self.stage, self.stage_started = stage, now
        if stage in ("active", "done"):
            self.finished = now
        if previous not in FINAL_STAGES:
            self._plain(f"stage {stage} ({previous} took {took:.1f} s)")

    def _plain(self, text: str) -> None:
        if self.board.mode == "plain":
            self.board.line(f"[{self.label}] {text}")

    # -- input -----------------------------------------------------------------
    def bytes(self, done: int, total: int | None = None) -> None:
        if total:
            self.total = total
        self.done = max(done, 0)
        if self.transfer_started is None:
            self.transfer_started = self.board.clock()
        if self.total and self.done >= self.total:
            if self.all_sent_at is None:
                self.all_sent_at = self.board.clock()
        else:
            self.all_sent_at = None
        now = self.board.clock()
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

    def _stage(self, stage: str, *, inferred: bool) -> None:
        if inferred and self._explicit_stages:
            return
        self.set_stage(stage)

    def event(self, event: Any) -> None:
        name = type(event).__name__
        image_id = getattr(event, "image_id", None)
        if isinstance(image_id, str) and image_id and image_id != self.image_id:
            self.image_id = image_id
            if self.kind == "upload":
                self.board.line(f"[{self.label}] image {image_id}")
        total = getattr(event, "total_bytes", None)
        if isinstance(total, int) and total > 0:
            self.total = total
        if name == "StageChanged":
            self._explicit_stages = True
            self._stage(str(getattr(event, "stage", "")), inferred=False)
        elif name in ("TransferStarted", "DownloadStarted"):
            resumed = getattr(event, "resumed_bytes", 0) or 0
            parts = getattr(event, "part_count", None)
            self.transfer_started = self.board.clock()
            self.transfer_ended = self.all_sent_at = None
            self.base = self.done = resumed if isinstance(resumed, int) else 0
            self._stage("uploading" if name == "TransferStarted" else "downloading",
                        inferred=True)
            self._plain(f"transfer started: {human_size(self.total)}"
                        + (f" in {parts} part(s)" if parts else "")
                        + (f", resuming at {human_size(resumed)}" if resumed else ""))
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
                inferred = {"queued": "preparing", "saving": "saving", "active": "verifying",
                            "killed": "failed", "deleted": "failed"}.get(status)
                if inferred and not (inferred == "failed" and self.stage == "interrupted"):
                    self._stage(inferred, inferred=True)
        elif name in ("TransferCompleted", "DownloadCompleted"):
            self.transfer_ended = self.board.clock()
            if self.total:
                self.done = max(self.done, self.total)
            self._plain(f"transfer completed in {self.transfer_seconds:.1f} s")
            if name == "TransferCompleted":
                self._stage("saving", inferred=True)
        elif name == "TransferFailed":
            self.failure = event
            if self.transfer_ended is None:
                self.transfer_ended = self.board.clock()
            cancelled = getattr(event, "cancelled", False)
            how = "cancelled" if cancelled else "failed"
            kept = ("; parts kept for --resume" if getattr(event, "resumable", False)
                    else "; multipart upload aborted" if getattr(event, "aborted", False)
                    else "")
            self._plain(f"transfer {how}{kept}")
            self._stage("interrupted" if cancelled else "failed", inferred=False)

    def complete(self) -> None:
        """The whole job succeeded (image active and verified, file written)."""
        now = self.board.clock()
        if self.transfer_ended is None:
            self.transfer_ended = now
        if self.total:
            self.done = max(self.done, self.total)
        self.set_stage("active" if self.kind == "upload" else "done")
        self.finished = now

    def fail(self) -> None:
        if self.stage not in FINAL_STAGES:
            self.set_stage("failed")


# --- columns of the migration display (rich Progress) -------------------------


def _task_rate(task: Task) -> float | None:
    """:func:`rate` for a rich task: bytes since its ``base`` (resumed bytes
    excluded) over the seconds since the task started."""
    return rate(task.completed - float(task.fields.get("base", 0)), task.elapsed or 0.0)


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{human_rate_of(_task_rate(task)):>11}", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left at :func:`rate`, or the elapsed time once finished."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text(clock(task.elapsed or 0), style="progress.elapsed")
        speed = _task_rate(task)
        if speed is None or task.total is None:
            return Text("-:--", style="progress.remaining")
        return Text(clock((task.total - task.completed) / speed), style="progress.remaining")
