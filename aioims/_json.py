"""How API response bodies are decoded: the one rule, used by
:func:`aioims._protocol.decode_response`.

:func:`loads` gives exactly what ``json.loads(body)`` gives — the same value
or the same exception — only faster when orjson (the ``aioims[speedups]``
extra) is installed.  orjson answers a ``bytes`` body only where it is known
to agree with the standard library; everything else is ``json.loads``:

* anything orjson rejects (NaN/Infinity, numbers beyond a double, lone
  surrogates, a BOM, UTF-16/32, invalid JSON, ...): the standard library
  decides, and returns its value or raises its error;
* integers beyond 64 bits, which orjson silently turns into floats: a run of
  20 characters of digits and ``-`` anywhere in the body (``>= 10**19``, or
  ``-`` and 19 digits) sends it to the standard library (such a run inside a
  string only costs the fast path);
* deep nesting, where the standard library raises ``RecursionError`` at a
  depth set by the interpreter's recursion allowance (~990 less the caller's
  stack on 3.11) while orjson nests up to 1024: a body with 512 or more
  ``[``/``{`` goes to the standard library (only a caller already ~480
  frames deep, or a recursion limit lowered below ~530, could still see
  ``json.loads`` fail where orjson does not);
* anything that is not ``bytes`` (``str``, ``bytearray``, ``memoryview``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def _find_orjson() -> Callable[[bytes], Any] | None:
    try:
        import orjson
    except ImportError:
        return None
    return orjson.loads


#: orjson's ``loads``, or ``None`` without the ``speedups`` extra.
_orjson_loads: Callable[[bytes], Any] | None = _find_orjson()

# One pass marks what the fast path must not see: digits and "-" become "0"
# (a run of 20 is a possible integer beyond 64 bits: >= 10**19, or "-" and 19
# digits), "[" and "{" are dropped (the length lost counts the openings).
# Dropping can only join runs, never split one.
_MARKS = bytes.maketrans(b"0123456789-", b"00000000000")
_OPENINGS = b"[{"
_LONG_RUN = b"0" * 20
_MAX_OPENINGS = 512


def loads(body: Any) -> Any:
    """``json.loads(body)``: the same value, or the same exception."""
    fast = _orjson_loads
    if fast is not None and body.__class__ is bytes:
        marked = body.translate(_MARKS, _OPENINGS)
        if len(body) - len(marked) < _MAX_OPENINGS and _LONG_RUN not in marked:
            try:
                return fast(body)
            except Exception:  # noqa: S110 - the standard library gives the answer
                pass
    return json.loads(body)
