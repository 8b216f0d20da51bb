"""The progress display, fed scripted events on a fake clock and rendered at
fixed widths (no engine, no timing): stages with elapsed time, byte-level
bars, one rate, totals known up front, Ctrl-C drawn once."""

from __future__ import annotations

import io
import re

import pytest
from rich.cells import cell_len
from rich.console import Console

from aioims.cli.progress import ProgressBoard, Tracker, human_rate_of, rate
from aioims.transfer.events import (
    UPLOAD_STAGES,
    BytesSent,
    StageChanged,
    StatusChanged,
    TransferCompleted,
    TransferStarted,
)

MiB = 1 << 20
IMAGE = "img-kvvfk28fcjc0mt"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def _board(clock: Clock, width: int = 80, mode: str = "bar") -> tuple[ProgressBoard, Console]:
    console = Console(file=io.StringIO(), width=width, record=True, force_terminal=False,
                      color_system=None)
    return ProgressBoard(mode, console=console, clock=clock, auto_refresh=False), console


def _fits(board: ProgressBoard) -> None:
    for width in (60, 80, 120):
        for line in board.frame(width):
            assert cell_len(line) <= width, (width, line)
            assert line == line.rstrip()


def test_stages_show_with_their_elapsed_time() -> None:
    clock = Clock()
    board, _ = _board(clock)
    with board:
        tracker = board.track("disk.raw", 64 * MiB)
        frames: dict[str, str] = {}
        for stage in UPLOAD_STAGES:
            tracker(StageChanged(stage, None if stage == "creating" else IMAGE))
            if stage == "uploading":
                tracker(TransferStarted(64 * MiB, 8, "upload-1", part_size=8 * MiB))
                for n in range(1, 65):
                    clock.tick(0.125)
                    tracker(BytesSent(n * MiB, 64 * MiB))
                tracker(TransferCompleted(None))  # type: ignore[arg-type]
            clock.tick(3)
            if stage == "active":
                tracker.complete()
            frames[stage] = board.frame(80)[0]
            _fits(board)
    assert frames["creating"].startswith("disk.raw creating 0:03")
    assert "preparing 0:03" in frames["preparing"]
    assert "uploading 0:11" in frames["uploading"]  # 8 s sending + 3 s
    # all bytes sent, the image not active yet: the line says so, with the time
    assert "saving 0:03" in frames["saving"] and "100%" in frames["saving"]
    assert "verifying 0:03" in frames["verifying"]
    # done: the whole time, from create to active
    assert "active 0:26" in frames["active"], frames["active"]
    assert "eta" not in frames["saving"] + frames["active"]


def test_bar_moves_inside_a_part_at_byte_granularity() -> None:
    clock = Clock()
    board, _ = _board(clock)
    tracker = board.track("disk.raw", 16 * MiB)
    tracker(StageChanged("uploading", IMAGE))
    tracker(TransferStarted(16 * MiB, 2, "upload-1", part_size=8 * MiB))
    seen = []
    for n in range(1, 9):  # 1 MiB events while the first 8 MiB part is written
        clock.tick(0.5)
        tracker(BytesSent(n * MiB, 16 * MiB))
        line = board.frame(120)[0]
        seen.append(int(re.search(r"(\d+)%", line).group(1)))  # type: ignore[union-attr]
        assert f"{n:.1f}/16.0 MiB" in line, line
    assert seen == sorted(seen) and len(set(seen)) == 8 and seen[-1] == 50
    assert "━" in board.frame(120)[0]


def test_one_rate_everywhere_excludes_resumed_bytes() -> None:
    clock = Clock()
    board, _ = _board(clock)
    tracker = board.track("disk.raw", 64 * MiB)
    clock.tick(5)  # create + prepare: not part of the rate
    tracker(TransferStarted(64 * MiB, 8, "upload-1", resumed_parts=4, resumed_bytes=32 * MiB))
    clock.tick(2)
    tracker(BytesSent(48 * MiB, 64 * MiB))
    assert tracker.sent == 16 * MiB
    assert tracker.rate == rate(16 * MiB, 2.0) == 8 * MiB
    line = board.frame(120)[0]
    assert human_rate_of(tracker.rate) == "8.0 MiB/s" and "8.0 MiB/s" in line
    assert "eta 0:02" in line  # 16 MiB left at 8 MiB/s
    clock.tick(2)
    tracker(BytesSent(64 * MiB, 64 * MiB))
    frame_at_last_byte = board.frame(120)[0]
    assert "100%" in frame_at_last_byte and "eta" not in frame_at_last_byte
    clock.tick(1)  # completing the multipart upload: no bytes move, the rate holds
    assert "8.0 MiB/s" in board.frame(120)[0]
    tracker(TransferCompleted(None))  # type: ignore[arg-type]
    clock.tick(10)  # saving/verifying do not dilute the rate
    tracker.complete()
    assert tracker.transfer_seconds == 4.0
    assert tracker.rate == 8 * MiB
    assert "8.0 MiB/s" in board.frame(120)[0]


def test_several_files_total_is_known_up_front() -> None:
    clock = Clock()
    board, _ = _board(clock)
    board.enable_overall(3 * 64 * MiB, files=3)
    first = board.track("a.raw", 64 * MiB)  # the other two wait for a slot
    first(TransferStarted(64 * MiB, 8, "u1"))
    clock.tick(1)
    first(BytesSent(8 * MiB, 64 * MiB))
    lines = board.frame(120)
    assert len(lines) == 2
    total = lines[1]
    assert total.startswith("total") and "0/3 done" in total
    assert "8.0/192.0 MiB" in total and "4%" in total
    assert "eta 0:23" in total  # (192 - 8) MiB at 8 MiB/s
    _fits(board)


def test_stages_inferred_without_stage_events() -> None:
    clock = Clock()
    board, _ = _board(clock)
    tracker = board.track("old.raw", 8 * MiB)
    assert tracker.stage == "creating"
    tracker(StatusChanged(IMAGE, "queued"))
    assert tracker.stage == "preparing"
    tracker(TransferStarted(8 * MiB, 1, None))
    assert tracker.stage == "uploading"
    tracker(TransferCompleted(None))  # type: ignore[arg-type]
    assert tracker.stage == "saving"
    tracker(StatusChanged(IMAGE, "saving"))
    tracker(StatusChanged(IMAGE, "active"))
    assert tracker.stage == "verifying"
    tracker.complete()
    assert tracker.stage == "active"
    # once StageChanged is seen, status events no longer move the stage
    explicit = board.track("new.raw", 8 * MiB)
    explicit(StageChanged("preparing", IMAGE))
    explicit(StatusChanged(IMAGE, "saving"))
    assert explicit.stage == "preparing"


def test_ctrl_c_draws_the_line_once() -> None:
    clock = Clock()
    board, console = _board(clock)
    with pytest.raises(KeyboardInterrupt), board:
        tracker = board.track("big.raw", 64 * MiB)
        tracker(StageChanged("uploading", IMAGE))
        tracker(TransferStarted(64 * MiB, 8, "u1"))
        for n in range(1, 4):
            clock.tick(1)
            tracker(BytesSent(n * 8 * MiB, 64 * MiB))
            board.refresh()
        raise KeyboardInterrupt
    text = console.export_text()
    bar_lines = [line for line in text.splitlines() if line.startswith("big.raw")]
    assert len(bar_lines) == 1, text
    assert "interrupted" in bar_lines[0] and "24.0/64.0 MiB" in bar_lines[0]
    assert tracker.last_working_stage == "uploading"


def test_plain_mode_prints_stage_lines(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    board, _ = _board(clock, mode="plain")
    with board:
        tracker: Tracker = board.track("disk.raw", 8 * MiB)
        clock.tick(1)
        tracker(StageChanged("preparing", IMAGE))
        clock.tick(2)
        tracker(StageChanged("uploading", IMAGE))
    err = capsys.readouterr().err
    assert f"[disk.raw] image {IMAGE}" in err
    assert "[disk.raw] stage preparing (creating took 1.0 s)" in err
    assert "[disk.raw] stage uploading (preparing took 2.0 s)" in err
    assert board.frame(80)  # frames can still be rendered (not drawn in plain mode)
