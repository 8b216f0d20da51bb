"""One rendering layer for every listing and summary of the CLI.

A command builds a :class:`View` (columns + rows + the JSON document) and
:meth:`aioims.cli.output.Output.show` prints it in the chosen format:

* ``table`` -- aligned columns that fit the terminal width: an id or a word is
  never split; when the table is too wide, low-priority columns are dropped
  (the footer says which) and free-text columns are shortened with ``…``;
  no trailing blanks.  ``COLUMNS`` is honoured, also when stdout is a pipe
  (a pipe without ``COLUMNS`` gets the whole table);
* ``value`` -- the raw values, tab-separated, one row per line, no header;
* ``csv``   -- a header of column keys, then the raw values;
* ``json``  -- the command's JSON document (``--json`` is ``-f json``).

``-c NAME`` (repeatable) chooses columns (by header, key or alias, in any
case, ``-``/``_``/space ignored); with ``-f json`` it projects the items on
those keys.  Pure: no click, no I/O (tests render strings at any width).
"""

from __future__ import annotations

import csv
import io
import json
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from rich.cells import cell_len, get_character_cell_size

FORMATS = ("table", "value", "json", "csv")
GAP = 2
ELLIPSIS = "…"
#: free text is shortened to this many cells (or its header) before a column
#: of priority 1 or 2 is dropped, and below it (down to MIN_TRUNCATED) only
#: when nothing else can give
SOFT_TRUNCATED = 16
MIN_TRUNCATED = 8


class UnknownColumnError(ValueError):
    """A ``-c`` name that matches no column (``available`` lists them)."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        super().__init__(f"unknown column {name!r} (available: {', '.join(available)})")
        self.name = name
        self.available = list(available)


def _s(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str) if value else "-"
    return str(value)


def raw(value: Any) -> str:
    """A value as ``value``/``csv`` print it: empty for None, compact JSON
    for lists and objects, ``str`` otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(value)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


@attrs.frozen
class Column:
    """One column: ``name`` is the header, ``key`` the JSON/CSV key.

    ``priority`` 0 is never dropped; on a narrow terminal the highest
    priorities go first (3 and above before any text is shortened, then 2,
    then 1).
    ``truncate``: free text that may be shortened with ``…`` (never ids).
    """

    name: str
    key: str
    get: Callable[[Mapping[str, Any]], Any] | None = None
    show: Callable[[Any], str] | None = None
    priority: int = 1
    truncate: bool = False
    right: bool = False
    aliases: tuple[str, ...] = ()

    def value(self, row: Mapping[str, Any]) -> Any:
        return self.get(row) if self.get is not None else row.get(self.key)

    def text(self, row: Mapping[str, Any]) -> str:
        value = self.value(row)
        text = self.show(value) if self.show is not None else _s(value)
        return " ".join(text.split()) if ("\n" in text or "\t" in text) else text

    def matches(self, name: str) -> bool:
        wanted = _norm(name)
        return wanted in {_norm(self.name), _norm(self.key), *(_norm(a) for a in self.aliases)}


@attrs.define
class View:
    """What a command shows: rows under columns, and its JSON document.

    ``document`` is printed by ``-f json`` (default: the rows projected on
    every column); with ``-c`` the list under ``items_key`` (or the document
    itself when ``items_key`` is None and it is a list) is projected on the
    chosen columns.  ``footer`` lines follow a table; ``empty`` replaces an
    empty table.  ``vertical``: one record shown as FIELD VALUE lines.
    """

    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    document: Any = None
    items_key: str | None = "items"
    footer: list[str] = attrs.field(factory=list)
    empty: str | None = None
    vertical: bool = False
    message: str | None = None


def select(columns: Sequence[Column], names: Sequence[str],
           rows: Sequence[Mapping[str, Any]] = ()) -> list[Column]:
    """The columns named by ``-c`` (in the order given), or all of them.  A
    name that is no column but a field of the rows (e.g. ``checksum`` of an
    image) makes a column of that field."""
    if not names:
        return list(columns)
    chosen: list[Column] = []
    fields = {_norm(k): k for row in rows[:1] for k in row}
    for name in names:
        for part in (p.strip() for p in name.split(",") if p.strip()):
            found = next((c for c in columns if c.matches(part)), None)
            if found is None and _norm(part) in fields:
                key = fields[_norm(part)]
                found = Column(key.upper(), key, truncate=True)
            if found is None:
                raise UnknownColumnError(part, [c.key for c in columns])
            if found not in chosen:
                chosen.append(found)
    return chosen


# --- table ------------------------------------------------------------------


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, ending with ``…`` when cut."""
    if cell_len(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for char in text:
        size = get_character_cell_size(char)
        if used + size > width - 1:
            break
        out.append(char)
        used += size
    return "".join(out).rstrip() + ELLIPSIS


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(width - cell_len(text), 0)
    return fill + text if right else text + fill


def fit(columns: Sequence[Column], cells: Sequence[Sequence[str]], width: int | None, *,
        explicit: bool = False) -> tuple[list[int], list[int]]:
    """Which columns to show (indices) and how wide each is (cells)."""
    n = len(columns)
    natural = [max([cell_len(columns[i].name), *(cell_len(r[i]) for r in cells)])
               for i in range(n)]
    def least(floor: int) -> list[int]:
        return [min(natural[i], max(cell_len(columns[i].name), floor))
                if columns[i].truncate else natural[i] for i in range(n)]

    soft, minimum = least(SOFT_TRUNCATED), least(MIN_TRUNCATED)
    keep = list(range(n))
    if width is None:
        return keep, natural

    def need(idx: list[int], short: bool) -> int:
        sizes = soft if short else natural
        return sum(sizes[i] for i in idx) + GAP * max(len(idx) - 1, 0)

    if not explicit:
        order = sorted((i for i in range(n) if columns[i].priority > 0),
                       key=lambda i: (-columns[i].priority, -i))
        for i in [i for i in order if columns[i].priority >= 3]:
            if need(keep, False) <= width:
                break
            keep.remove(i)
        for i in [i for i in order if columns[i].priority in (1, 2)]:
            if need(keep, True) <= width:
                break
            keep.remove(i)
    widths = list(natural)
    over = need(keep, False) - width
    for floor in (soft, minimum):
        while over > 0:
            shrinkable = [i for i in keep if widths[i] > floor[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            others = [widths[i] for i in shrinkable if i != widest]
            # shrink the widest down to the next widest (or as far as needed)
            target = max(floor[widest], max(others, default=floor[widest]),
                         widths[widest] - over)
            if target >= widths[widest]:
                target = widths[widest] - 1
            over -= widths[widest] - target
            widths[widest] = target
    return keep, widths


def table_lines(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]],
                width: int | None, *, explicit: bool = False) -> tuple[list[str], list[str]]:
    """The lines of a table and the names of the columns left out."""
    cells = [[c.text(row) for c in columns] for row in rows]
    keep, widths = fit(columns, cells, width, explicit=explicit)
    lines = []
    for line_cells in ([c.name for c in columns], *cells):
        parts = [_pad(truncate(line_cells[i], widths[i]), widths[i], columns[i].right)
                 for i in keep]
        lines.append((" " * GAP).join(parts).rstrip())
    hidden = [columns[i].name for i in range(len(columns)) if i not in keep]
    return lines, hidden


def wrap(text: str, width: int | None, indent: str = "") -> list[str]:
    """``text`` wrapped at spaces to ``width`` (a word longer than a line is
    the only thing ever cut); no trailing blanks."""
    if width is None:
        return [(indent + line).rstrip() for line in text.splitlines() or [""]]
    out: list[str] = []
    for para in text.splitlines() or [""]:
        para = _UNIT.sub("\\1\u00a0\\2", para)  # "38.1 MiB", "1.2 s": never apart
        lines = textwrap.wrap(para, width=max(width, 10), initial_indent=indent,
                              subsequent_indent=indent, break_on_hyphens=False)
        out.extend(line.rstrip().replace("\u00a0", " ") for line in lines or [""])
    return out


_UNIT = re.compile(r"(\d) (B|KiB|MiB|GiB|TiB|s)\b")


def detail_lines(columns: Sequence[Column], row: Mapping[str, Any],
                 width: int | None) -> list[str]:
    """One record as ``FIELD  VALUE`` lines, values wrapped at spaces."""
    key_width = max((cell_len(c.name) for c in columns), default=0)
    lines: list[str] = []
    for column in columns:
        text = column.text(row)
        room = None if width is None else max(width - key_width - GAP, 16)
        chunks = wrap(text, room) or [""]
        head = _pad(column.name, key_width, False) + " " * GAP
        lines.append((head + chunks[0]).rstrip())
        lines.extend((" " * (key_width + GAP) + c).rstrip() for c in chunks[1:])
    return lines


# --- the formats --------------------------------------------------------------


def project(view: View, columns: Sequence[Column]) -> Any:
    """The JSON document with its items reduced to ``columns``."""
    def one(row: Mapping[str, Any]) -> dict[str, Any]:
        return {c.key: c.value(row) for c in columns}

    if view.vertical:
        return one(view.rows[0]) if view.rows else {}
    items = [one(r) for r in view.rows]
    if view.items_key is not None and isinstance(view.document, dict):
        return {**view.document, view.items_key: items}
    return items


def render(view: View, fmt: str, names: Sequence[str] = (), width: int | None = None) -> str:
    """The text ``view`` prints as in format ``fmt`` (ends with a newline
    unless empty)."""
    columns = select(view.columns, names, view.rows)
    if fmt == "json":
        doc = project(view, columns) if names or view.document is None else view.document
        return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for row in view.rows:
            writer.writerow([raw(c.value(row)) for c in columns])
        return buf.getvalue()
    if fmt == "value":
        if view.vertical:
            lines = [raw(c.value(view.rows[0])) for c in columns] if view.rows else []
        else:
            lines = ["\t".join(raw(c.value(row)) for c in columns) for row in view.rows]
        return "".join(line + "\n" for line in lines)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}")
    lines = []
    if view.message is not None and not names:
        lines = wrap(view.message, width)
    elif view.vertical:
        if view.rows:
            lines = detail_lines(columns, view.rows[0], width)
    elif view.rows:
        table, hidden = table_lines(columns, view.rows, width, explicit=bool(names))
        lines.extend(table)
        if hidden:
            lines.extend(wrap(f"(hidden at {width} columns: {', '.join(hidden)}; "
                              "pick columns with -c)", width))
    elif view.empty:
        lines = wrap(view.empty, width)
    for text in view.footer:
        lines.extend(wrap(text, width))
    return "".join(line + "\n" for line in lines)
