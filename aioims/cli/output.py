"""Output of a command: results in one of the formats of
:mod:`aioims.cli.render` (``-f table|value|json|csv``, ``-c COLUMN``), error
reporting, secret redaction.

Results go to stdout, one document per command; errors go to stderr (a JSON
line ``{"error": {...}}`` under ``-f json``, one human line otherwise).  Usage
errors (exit 2) under ``-f json`` are a JSON document on stdout instead, so a
script reading stdout always gets JSON.  Every line written to stderr passes
through :meth:`Output.redact`, so a configured token never appears, not even
inside an exception message or a debug log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console

from ..errors import IMSError, UploadFailedError
from ..models import to_wire
from .render import Column, UnknownColumnError, View, render

REDACTED = "***"


def human_size(num: int | float | None) -> str:
    if num is None:
        return "-"
    value = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def human_rate(num_bytes: int, seconds: float) -> str:
    if seconds <= 0:
        return "-"
    return f"{human_size(num_bytes / seconds)}/s"


def wire(obj: Any) -> Any:
    """A model (or a list of models) as the vendor's camelCase JSON shape."""
    return to_wire(obj)


def page_json(items: Sequence[Any], total: int, current: int, size: int) -> dict[str, Any]:
    return {"items": [wire(i) for i in items], "total": total, "current": current, "size": size}


class Output:
    """Where a command writes: stdout for results, stderr for everything else."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False,
                 fmt: str = "table", columns: Sequence[str] = ()) -> None:
        self.fmt = "json" if json_mode else fmt
        self.columns: list[str] = list(columns)
        self.quiet = quiet
        self._secrets: set[str] = set()
        self._stdout: Console | None = None
        self._stderr: Console | None = None

    @property
    def json_mode(self) -> bool:
        return self.fmt == "json"

    @json_mode.setter
    def json_mode(self, value: bool) -> None:
        if value:
            self.fmt = "json"
        elif self.fmt == "json":
            self.fmt = "table"

    @property
    def stdout(self) -> Console:
        if self._stdout is None:
            self._stdout = Console(file=sys.stdout, soft_wrap=True, width=terminal_width(),
                                   highlight=False)
        return self._stdout

    @property
    def stderr(self) -> Console:
        if self._stderr is None:
            self._stderr = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        return self._stderr

    # --- secrets ----------------------------------------------------------
    def add_secret(self, secret: str | None) -> None:
        if secret and len(secret) >= 3:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def install_log_redaction(self) -> None:
        """Make every log record (``--debug``) pass through :meth:`redact`."""
        redact = self.redact

        class _Redact(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                record.msg = redact(record.getMessage())
                record.args = None
                return True

        for handler in logging.getLogger().handlers:
            handler.addFilter(_Redact())

    # --- results ----------------------------------------------------------
    def show(self, view: View) -> None:
        """Print ``view`` in the chosen format and columns."""
        try:
            text = render(view, self.fmt, self.columns, terminal_width())
        except UnknownColumnError as exc:
            self.usage(f"-c/--column: {exc}")
            raise SystemExit(2) from None
        self.write(text)

    def result(self, data: Any, render: Callable[[], None] | None = None) -> None:
        """Print *data* as JSON (``-f json``) or call *render* for humans."""
        if self.json_mode or render is None:
            self.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
        else:
            render()

    def write(self, text: str) -> None:
        """Plain text on stdout, never re-wrapped (lines already fit)."""
        sys.stdout.write(text)
        sys.stdout.flush()

    def print(self, *objects: Any) -> None:
        self.stdout.print(*objects)

    def info(self, message: str) -> None:
        """A human note on stderr (suppressed by ``--quiet`` and ``-f json``)."""
        if not self.quiet and not self.json_mode:
            self.stderr.print(self.redact(message), markup=False)

    def warn(self, message: str) -> None:
        self.stderr.print(self.redact(message), markup=False, style="yellow")

    def usage(self, message: str) -> None:
        """A usage error: one line on stderr, or JSON on stdout under ``-f json``."""
        write_usage_error(self.redact(message), self.json_mode)

    # --- errors -----------------------------------------------------------
    def error(self, exc: BaseException | str, *, hint: str | None = None,
              target: str | None = None) -> None:
        """An error on stderr: one human line (plus the hint), or one JSON
        line under ``-f json``.  ``target``: what failed (an id, a file)."""
        if isinstance(exc, str):
            payload: dict[str, Any] = {"type": "Error", "message": exc}
            line = f"Error: {exc}"
        else:
            payload = error_payload(exc)
            line = "Error: " + describe_error(exc)
        if target:
            payload["target"] = target
            line = line.replace("Error: ", f"Error: {target}: ", 1)
        if hint:
            payload["hint"] = hint
        if self.json_mode:
            text = json.dumps({"error": payload}, ensure_ascii=False, default=str)
            sys.stderr.write(self.redact(text) + "\n")
        else:
            sys.stderr.write(self.redact(line) + "\n")
            if hint:
                sys.stderr.write(self.redact(hint) + "\n")
        sys.stderr.flush()


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def error_fields(exc: BaseException) -> tuple[str | None, str | None, int | None]:
    """The first ``IMG.*``-style code, request id and HTTP status in the chain."""
    code = request_id = None
    status = None
    for item in _chain(exc):
        if isinstance(item, IMSError):
            code = code or item.code
            request_id = request_id or item.request_id
            status = status if status is not None else item.http_status
    return code, request_id, status


def error_payload(exc: BaseException) -> dict[str, Any]:
    code, request_id, status = error_fields(exc)
    payload: dict[str, Any] = {
        "type": type(exc).__name__,
        "code": code,
        "message": getattr(exc, "message", None) or str(exc),
        "requestId": request_id,
        "httpStatus": status,
    }
    if isinstance(exc, UploadFailedError):
        payload["imageId"] = exc.image_id
        payload["stage"] = exc.stage
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        payload["cause"] = f"{type(cause).__name__}: {cause}"
    return payload


_DETAILS = re.compile(r"\s*\((?:http_status=\d+(?:, )?)?(?:request_id=[^)]*)?\)")


def describe_error(exc: BaseException) -> str:
    code, request_id, status = error_fields(exc)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = _DETAILS.sub("", message)  # a wrapped error's details: repeated below
    head = f"{code}: {message}" if code and code not in message else message
    extra = []
    if isinstance(exc, UploadFailedError):
        if exc.image_id:
            extra.append(f"image {exc.image_id}")
        if exc.stage:
            extra.append(f"stage {exc.stage}")
    if status is not None:
        extra.append(f"HTTP {status}")
    if request_id:
        extra.append(f"request id: {request_id}")
    text = f"{head} ({', '.join(extra)})" if extra else head
    cause = exc.__cause__
    if cause is not None and str(cause) and _DETAILS.sub("", str(cause)) not in text:
        text += f"\n  caused by {type(cause).__name__}: {cause}"
    return text


def terminal_width() -> int | None:
    """The width tables fit: ``COLUMNS`` when set (also when stdout is a
    pipe), the terminal's width on a terminal, else None (no limit)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        if sys.stdout.isatty():
            return shutil.get_terminal_size().columns
    except (AttributeError, ValueError, OSError):
        pass
    return None


def write_usage_error(message: str, json_mode: bool) -> None:
    message = " ".join(message.split())
    if json_mode:
        doc = {"error": {"type": "UsageError", "message": message, "exitCode": 2}}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    else:
        sys.stderr.write(f"Error: {message}\n")
        sys.stderr.flush()


# --- views --------------------------------------------------------------------


def _gib(value: Any) -> str:
    return f"{value} GiB" if value is not None else "-"


def _nested(field: str, key: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda row: (row.get(field) or {}).get(key)


IMAGE_COLUMNS = (
    Column("IMAGE ID", "imageId", priority=0, aliases=("id",)),
    Column("NAME", "name", priority=0, truncate=True),
    Column("STATUS", "status", priority=0),
    Column("TYPE", "imageType", priority=3),
    Column("FORMAT", "diskFormat", priority=2),
    Column("SIZE", "size", show=human_size, right=True, priority=1),
    Column("MIN DISK", "minDisk", show=_gib, right=True, priority=3),
    Column("OS", "osType", priority=3),
    Column("VISIBILITY", "visibility", priority=4),
    Column("CREATED", "createdAt", priority=2),
)


def image_view(images: Sequence[Mapping[str, Any]], *, footer: str | None = None,
               document: Any = None) -> View:
    return View(IMAGE_COLUMNS, list(images), document=document,
                footer=[footer] if footer and images else [],
                empty="no images" + (f" ({footer})" if footer else ""))


def detail_view(data: Mapping[str, Any], document: Any = None) -> View:
    """One object as FIELD VALUE lines (``-c`` picks fields)."""
    def show_for(key: str) -> Callable[[Any], str]:
        def show(value: Any) -> str:
            if key == "size" and isinstance(value, int):
                return f"{value} ({human_size(value)})"
            return _s(value)
        return show

    columns = [Column(key, key, show=show_for(key)) for key in data]
    return View(columns, [data], document=data if document is None else document,
                vertical=True)


def record_view(columns: Sequence[Column], row: Mapping[str, Any], document: Any,
                message: str | None = None) -> View:
    """A summary of one action: ``message`` (wrapped to the width) in table
    format, the row's columns in the others (and in a table with ``-c``),
    ``document`` as JSON."""
    return View(columns, [row], document=document, vertical=message is None, message=message)


def share_view(shares: Sequence[Mapping[str, Any]], *, with_image: bool,
               footer: str | None = None, document: Any = None) -> View:
    if with_image:
        columns: tuple[Column, ...] = (
            Column("SHARE ID", "shareId", priority=0, aliases=("id",)),
            Column("IMAGE ID", "imageId", priority=1),
            Column("NAME", "name", get=_nested("image", "name"), priority=0, truncate=True),
            Column("STATUS", "status", get=_nested("image", "status"), priority=1),
            Column("SIZE", "size", get=_nested("image", "size"), show=human_size, right=True,
                   priority=2),
            Column("OWNER", "owner", get=_nested("image", "owner"), priority=3),
            Column("CREATED", "createdAt", priority=2),
        )
    else:
        columns = (
            Column("SHARE ID", "shareId", priority=0, aliases=("id",)),
            Column("IMAGE ID", "imageId", priority=1),
            Column("USER ID", "userId", priority=0),
            Column("USER NAME", "userName", priority=2, truncate=True),
            Column("CREATED", "createdAt", priority=2),
        )
    return View(columns, list(shares), document=document,
                footer=[footer] if footer and shares else [],
                empty="no shares" + (f" ({footer})" if footer else ""))


def bucket_view(buckets: Sequence[Mapping[str, Any]], document: Any = None) -> View:
    columns = (
        Column("NAME", "name", priority=0),
        Column("AZ ID", "azId", priority=1),
        Column("CELL ID", "cellId", priority=1),
    )
    return View(columns, list(buckets), document=document, empty="no export buckets")


def _s(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str) if value else "-"
    return str(value)


def page_footer(shown: int, total: int, current: int, size: int, walked_all: bool) -> str:
    if walked_all:
        return f"{shown} of {total} item(s)"
    return f"page {current}, {shown} of {total} item(s), page size {size}"
