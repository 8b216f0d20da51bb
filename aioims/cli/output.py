"""Human tables (rich) and ``--json`` output, error reporting, secret redaction.

JSON goes to stdout, one document per command; errors go to stderr (a JSON
line ``{"error": {...}}`` with ``--json``, a human line otherwise).  Every line
written to stderr passes through :meth:`Output.redact`, so a configured token
never appears, not even inside an exception message or a debug log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ..errors import IMSError, UploadFailedError
from ..models import to_wire

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

    def __init__(self, *, json_mode: bool = False, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self._secrets: set[str] = set()
        self.stdout = Console(
            file=sys.stdout,
            soft_wrap=False,
            width=None if sys.stdout.isatty() else 160,
            highlight=False,
        )
        self.stderr = Console(file=sys.stderr, highlight=False, soft_wrap=True)

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
    def result(self, data: Any, render: Callable[[], None] | None = None) -> None:
        """Print *data* as JSON (``--json``) or call *render* for humans."""
        if self.json_mode or render is None:
            text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        else:
            render()

    def print(self, *objects: Any) -> None:
        self.stdout.print(*objects)

    def info(self, message: str) -> None:
        """A human note on stderr (suppressed by ``--quiet`` and ``--json``)."""
        if not self.quiet and not self.json_mode:
            self.stderr.print(self.redact(message), markup=False)

    def warn(self, message: str) -> None:
        self.stderr.print(self.redact(message), markup=False, style="yellow")

    # --- errors -----------------------------------------------------------
    def error(self, exc: BaseException | str, *, hint: str | None = None) -> None:
        if isinstance(exc, str):
            payload: dict[str, Any] = {"type": "Error", "message": exc}
            line = f"Error: {exc}"
        else:
            payload = error_payload(exc)
            line = "Error: " + describe_error(exc)
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
    extra.append(f"request id: {request_id or '-'}")
    text = f"{head} ({', '.join(extra)})"
    cause = exc.__cause__
    if cause is not None and str(cause) and _DETAILS.sub("", str(cause)) not in text:
        text += f"\n  caused by {type(cause).__name__}: {cause}"
    return text


# --- tables -----------------------------------------------------------------


def _table(*columns: str, caption: str | None = None) -> Table:
    table = Table(box=box.SIMPLE_HEAD, caption=caption, caption_justify="left", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _s(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


def _empty(what: str, footer: str | None) -> Text:
    return Text(f"no {what}" + (f" ({footer})" if footer else ""))


def image_table(images: Sequence[Mapping[str, Any]], *,
                footer: str | None = None) -> RenderableType:
    if not images:
        return _empty("images", footer)
    table = _table("IMAGE ID", "NAME", "STATUS", "TYPE", "FORMAT", "SIZE", "MIN DISK", "OS",
                   "VISIBILITY", "CREATED", caption=footer)
    for img in images:
        table.add_row(
            _s(img.get("imageId")),
            _s(img.get("name")),
            _s(img.get("status")),
            _s(img.get("imageType")),
            _s(img.get("diskFormat")),
            human_size(img.get("size")),
            f"{img['minDisk']} GiB" if img.get("minDisk") is not None else "-",
            _s(img.get("osType")),
            _s(img.get("visibility")),
            _s(img.get("createdAt")),
        )
    return table


def detail_table(data: Mapping[str, Any]) -> Table:
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        if key == "size" and isinstance(value, int):
            shown = f"{value} ({human_size(value)})"
        elif isinstance(value, (dict, list)):
            shown = json.dumps(value, ensure_ascii=False, default=str) if value else "-"
        else:
            shown = _s(value)
        table.add_row(key, shown)
    return table


def share_table(shares: Sequence[Mapping[str, Any]], *, with_image: bool,
                footer: str | None = None) -> RenderableType:
    if not shares:
        return _empty("shares", footer)
    if with_image:
        table = _table("SHARE ID", "IMAGE ID", "NAME", "STATUS", "SIZE", "OWNER", "CREATED",
                       caption=footer)
        for share in shares:
            img = share.get("image") or {}
            table.add_row(_s(share.get("shareId")), _s(share.get("imageId")),
                          _s(img.get("name")), _s(img.get("status")), human_size(img.get("size")),
                          _s(img.get("owner")), _s(share.get("createdAt")))
        return table
    table = _table("SHARE ID", "IMAGE ID", "USER ID", "USER NAME", "CREATED", caption=footer)
    for share in shares:
        table.add_row(_s(share.get("shareId")), _s(share.get("imageId")),
                      _s(share.get("userId")), _s(share.get("userName")),
                      _s(share.get("createdAt")))
    return table


def bucket_table(buckets: Sequence[Mapping[str, Any]]) -> RenderableType:
    if not buckets:
        return _empty("export buckets", None)
    table = _table("NAME", "AZ ID", "CELL ID")
    for bucket in buckets:
        table.add_row(_s(bucket.get("name")), _s(bucket.get("azId")), _s(bucket.get("cellId")))
    return table


def page_footer(shown: int, total: int, current: int, size: int, walked_all: bool) -> str:
    if walked_all:
        return f"{shown} of {total} item(s)"
    return f"page {current}, {shown} of {total} item(s), page size {size}"
