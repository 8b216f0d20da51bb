"""Candidate engine changes, applied as monkeypatches inside one benchmark
child only (``--experiments``), so a proposed change is measured against the
unchanged engine in the same run before anyone edits ``aioims/transfer``.

* ``view-writes-128k`` / ``view-writes-1m``: aiohttp sends a ``BytesIO`` body
  as memoryview slices of its buffer (no copy) of that size instead of
  256 KiB ``read()`` copies (the loop does less per byte; smaller slices
  bound the work per loop iteration).

Adopted after being measured this way (see docs/performance.md, "before
tuning"): lazily zero-filled part buffers (``calloc-buffers``), no CA bundle
for ``http://`` endpoints (``http-no-ca``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any


def view_writes(chunk_size: int) -> Callable[[], None]:
    """aiohttp sends a BytesIO body as ``chunk_size`` memoryview slices of its
    buffer (no copy), yielding to the loop between slices as aiohttp does."""

    def patch() -> None:
        import asyncio

        from aiohttp import payload

        async def write_with_length(self: Any, writer: Any, content_length: int | None) -> None:
            self._set_or_restore_start_position()
            value: io.BytesIO = self._value
            start = value.tell()
            with value.getbuffer() as buffer:
                end = len(buffer)
                if content_length is not None:
                    end = min(end, start + content_length)
                position = start
                while position < end:
                    if position > start:
                        await asyncio.sleep(0)
                    step = min(chunk_size, end - position)
                    chunk = buffer[position : position + step]
                    try:
                        await writer.write(chunk)
                    finally:
                        chunk.release()
                    position += step
            value.seek(end)

        payload.BytesIOPayload.write_with_length = write_with_length  # type: ignore[method-assign]

    return patch


PATCHES: dict[str, Callable[[], None]] = {
    "view-writes-128k": view_writes(128 * 1024),
    "view-writes-1m": view_writes(1024 * 1024),
}


def apply(names: list[str]) -> None:
    for name in names:
        PATCHES[name]()
