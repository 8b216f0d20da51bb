"""docs/api.md documents every public endpoint coroutine of IMSSession."""

from __future__ import annotations

import inspect
from pathlib import Path

from aioims import IMSSession

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_every_coroutine_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    public = [
        name
        for name, member in inspect.getmembers(IMSSession)
        if not name.startswith("_")
        and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
    ]
    assert len(public) >= 23
    missing = [name for name in public if f"{name}(" not in text]
    assert missing == []
