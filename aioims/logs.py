"""Debug logging without secrets.

At DEBUG level botocore logs every S3 request it signs -- headers (with
``Authorization`` and ``X-Amz-Security-Token``), the canonical request and
the signature -- and aiohttp and the SDK log what they send.  This module masks
those secrets before any handler writes them::

    import logging
    import aioims.logs

    aioims.logs.enable_debug_logging()          # stderr, DEBUG, secrets masked
    # or, with your own logging configuration already in place:
    aioims.logs.install_redaction()             # on the root logger's handlers

What is masked (replaced by ``***``):

* ``Authorization`` / ``Proxy-Authorization`` header values (whole value:
  ``Bearer ...``, ``AWS4-HMAC-SHA256 Credential=..., Signature=...``);
* ``X-Amz-Security-Token`` (header, canonical-request line or query
  parameter), ``X-Amz-Signature`` / ``Signature=``, ``X-Amz-Credential`` /
  ``Credential=`` (so presigned URLs lose their credentials), and
  ``X-Emulator-Admin-Token``;
* ``Bearer <token>`` anywhere, and AWS access key ids (``AKIA...``,
  ``ASIA...``) anywhere;
* JSON / ``repr`` / ``key=value`` fields named like credentials:
  ``accessKey``, ``secretKey``, ``token``, ``sessionToken``,
  ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``,
  ``password``...

The filter works on the formatted message -- secrets passed in
``record.args`` (botocore logs header dicts with ``%s``) are caught -- and on
the traceback text of ``exc_info``.  It is a :class:`logging.Filter` on
handlers and loggers, so it only runs for records that are actually emitted:
with DEBUG off it costs nothing.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import IO

__all__ = [
    "LOGGERS",
    "REDACTED",
    "RedactingFilter",
    "enable_debug_logging",
    "install_redaction",
    "redact",
]

REDACTED = "***"

#: the loggers :func:`install_redaction` filters (and their existing children)
LOGGERS: tuple[str, ...] = ("aioims", "botocore", "aiobotocore", "aiohttp", "s3transfer", "urllib3")

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# header-like names whose whole value (spaces included, up to a quote or the
# end of the line) is secret
_WHOLE = r"(?:proxy-)?authorization"
# names whose value (up to a space, quote, comma, '&', ';', bracket) is secret
_NAMES = (
    r"x-amz-security-token|x-amz-signature|x-amz-credential|x-emulator-admin-token"
    r"|aws_secret_access_key|aws_access_key_id|aws_session_token"
    r"|secret_?access_?key|secret_?key|access_?key_?id|access_?key"
    r"|session_?token|security_?token|sessiontoken|signature|credential"
    r"|password|passwd|token"
)
_SEP = r"""["']?\s*(?:[:=]|%3[dD]|(?<=["'])\s*,(?=\s*b?["']))\s*(?:(?-i:b)(?=["']))?["']?"""
_PATTERN = re.compile(
    rf"""(?P<wk>(?<![\w-])(?:{_WHOLE})(?=["'\s:=]){_SEP})(?P<wv>[^"'\r\n]+)"""
    rf"""|(?P<nk>(?<![\w-])(?:{_NAMES})(?![\w-]){_SEP})"""
    r"""(?P<nv>[^\s"',&;}\])<>]+)"""
    r"""|(?P<bk>\bBearer\s+)(?P<bv>[A-Za-z0-9._~+/=-]+)"""
    r"""|(?P<ak>\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{12,}\b)""",
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    for key in ("wk", "nk", "bk"):
        prefix = match.group(key)
        if prefix is not None:
            return prefix + REDACTED
    return REDACTED


def redact(text: str) -> str:
    """*text* with every secret this module knows masked as ``***``."""
    return _PATTERN.sub(_mask, text)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message (after ``%`` formatting with its
    args), in its traceback text and its stack info.  Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: mask what the error report would show
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


#: the one filter instance (adding it twice to a handler or logger is a no-op)
FILTER = RedactingFilter()


def install_redaction(
    handlers: Iterable[logging.Handler] | None = None,
    *,
    loggers: Iterable[str] = LOGGERS,
) -> RedactingFilter:
    """Mask secrets in what gets logged.

    The filter goes on *handlers* (default: every handler of the root logger,
    which is where records of every logger end up when they propagate) and on
    the loggers named in *loggers* and their existing children (records
    handled by handlers attached directly to them).  Call it again after
    adding handlers.  Idempotent; returns the filter.
    """
    targets = list(logging.getLogger().handlers if handlers is None else handlers)
    for handler in targets:
        handler.addFilter(FILTER)
    prefixes = tuple(loggers)
    for name in prefixes:
        logging.getLogger(name).addFilter(FILTER)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith(
            tuple(prefix + "." for prefix in prefixes)
        ):
            logger.addFilter(FILTER)
            for handler in logger.handlers:
                handler.addFilter(FILTER)
    return FILTER


def enable_debug_logging(
    level: int = logging.DEBUG,
    *,
    stream: IO[str] | None = None,
    fmt: str = DEFAULT_FORMAT,
) -> logging.Handler:
    """Log at *level* to *stream* (default stderr) with secrets masked.

    Adds one stream handler to the root logger (unless one writing to that
    stream is already there), sets the root level, and calls
    :func:`install_redaction` on every root handler.  Returns the handler.
    """
    target = sys.stderr if stream is None else stream
    root = logging.getLogger()
    handler: logging.Handler | None = next(
        (
            h
            for h in root.handlers
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is target
        ),
        None,
    )
    if handler is None:
        handler = logging.StreamHandler(target)
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    root.setLevel(level)
    install_redaction()
    return handler
