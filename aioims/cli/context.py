"""Per-invocation state, the global options and the async runner.

Global options (``--endpoint``, ``--json``, ...) are accepted both before the
command (``aioims --json images list``) and after it (``aioims images list
--json``): they are declared once here and attached to the root group and to
every leaf command; each stores its value in the shared :class:`State`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import anyio.lowlevel
import attrs
import click

from ..errors import IMSError, ValidationError
from . import config as config_mod
from .output import Output, error_payload
from .progress import MODES, pick_mode
from .render import FORMATS, Column, View

if TYPE_CHECKING:
    from ..session import IMSSession

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@attrs.define
class State:
    """What the global options collected, plus lazily built helpers."""

    flags: dict[str, Any] = attrs.field(factory=dict)
    json_mode: bool = False
    fmt: str = "table"
    columns: list[str] = attrs.field(factory=list)
    quiet: bool = False
    debug: bool = False
    progress: str = "auto"
    _output: Output | None = None
    _settings: config_mod.Settings | None = None

    @property
    def output(self) -> Output:
        if self._output is None:
            self._output = Output(json_mode=self.json_mode, quiet=self.quiet)
        # --json/--quiet may come after an option that already needed the output
        self._output.fmt = "json" if self.json_mode else self.fmt
        self._output.columns = self.columns
        self._output.quiet = self.quiet
        self._output.add_secret(self.flags.get("token"))
        return self._output

    @property
    def progress_mode(self) -> str:
        return pick_mode(self.progress, quiet=self.quiet)

    def settings(self) -> config_mod.Settings:
        if self._settings is None:
            try:
                self._settings = config_mod.resolve(self.flags)
            except config_mod.ConfigError as exc:
                usage_error(self, str(exc))
            self.output.add_secret(self._settings.token)
        return self._settings

    def require(self, *names: str) -> config_mod.Settings:
        """The settings, failing with a usage error when a needed one is missing."""
        settings = self.settings()
        hints = {
            "endpoint": "--endpoint / IMS_ENDPOINT",
            "region": "--region / IMS_REGION",
            "tenant_id": "--tenant-id / IMS_TENANT_ID",
            "department_id": "--department-id / IMS_DEPARTMENT_ID",
        }
        for name in names:
            if not getattr(settings, name):
                usage_error(
                    self,
                    f"no {name.replace('_', ' ')} configured: pass {hints.get(name, name)} "
                    f"or set it in profile [{settings.profile}] of {settings.config_file}",
                )
        return settings

    def session(self) -> AbstractAsyncContextManager[IMSSession]:
        """A new :class:`aioims.IMSSession` from the resolved settings."""
        from .. import HeaderAuth, IMSSession

        settings = self.require("endpoint", "region")
        auth = None
        if settings.token:
            auth = HeaderAuth({"Authorization": f"Bearer {settings.token}"})
        # endpoint, region, TLS, timeout, retry policy and tenant defaults
        return IMSSession(**settings.session_kwargs(), auth=auth)


def get_state() -> State:
    return click.get_current_context().ensure_object(State)


def usage_error(state: State, message: str) -> NoReturn:
    """One line on stderr (JSON on stdout under ``-f json``), exit 2."""
    state.output.usage(message)
    raise click.exceptions.Exit(EXIT_USAGE)


# --- global options ---------------------------------------------------------


def _flag_store(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None or value is False or value == ():
            return value
        state = ctx.ensure_object(State)
        if key == "json":
            state.json_mode = True
        elif key == "fmt":
            state.fmt = value
            state.json_mode = state.json_mode or value == "json"
        elif key == "columns":
            state.columns.extend(v for v in value if v not in state.columns)
        elif key == "quiet":
            state.quiet = True
        elif key == "debug":
            state.debug = True
            _enable_debug(state)
        elif key == "progress":
            state.progress = value
        else:
            state.flags[key] = value
        return value

    return callback


def _enable_debug(state: State) -> None:
    from ..logs import enable_debug_logging  # masks S3/IMS secrets (see docs/cli.md)

    enable_debug_logging(logging.DEBUG)
    state.output.install_log_redaction()


_OPTION_SPECS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--endpoint",), {"metavar": "URL", "help": "Service root URL [env IMS_ENDPOINT]."}),
    (("--region",), {"metavar": "ID", "help": "Region id sent as x-regionid [env IMS_REGION]."}),
    (("--token",), {"metavar": "TOKEN", "help": "Bearer token [env IMS_TOKEN]; never printed."}),
    (("--profile",), {"metavar": "NAME",
                      "help": "Profile of ~/.config/aioims/config.toml [env IMS_PROFILE]."}),
    (("--tenant-id", "tenant_id"), {"metavar": "ID", "help": "Tenant id [env IMS_TENANT_ID]."}),
    (("--department-id", "department_id"),
     {"metavar": "ID", "help": "Department id [env IMS_DEPARTMENT_ID]."}),
    (("--resource-group-id", "resource_group_id"),
     {"metavar": "ID", "help": "Resource group id [env IMS_RESOURCE_GROUP_ID]."}),
    (("--ca-bundle", "ca_bundle"),
     {"metavar": "PEM", "help": "CA bundle to verify the service [env IMS_CA_BUNDLE]."}),
    (("--insecure",), {"is_flag": True, "help": "Do not verify TLS certificates."}),
    (("--json", "json"), {"is_flag": True, "help": "Machine-readable JSON on stdout "
                                                   "(same as -f json)."}),
    (("--format", "-f", "fmt"),
     {"type": click.Choice(FORMATS), "metavar": "FORMAT",
      "help": "Result format: table (fits the terminal), value (tab-separated), json, csv."}),
    (("--column", "-c", "columns"),
     {"multiple": True, "metavar": "NAME",
      "help": "Show only this column or field (repeatable, or comma-separated)."}),
    (("--quiet", "-q", "quiet"), {"is_flag": True, "help": "No progress bars or notes."}),
    (("--progress", "progress"),
     {"type": click.Choice(MODES), "metavar": "MODE",
      "help": "Progress display: auto (bars on a terminal), bar, plain (lines), none."}),
    (("--debug", "debug"),
     {"is_flag": True, "help": "Debug logging on stderr (secrets redacted)."}),
    *config_mod.OPTION_SPECS,  # --request-timeout, --max-attempts
]


def global_options(func: F) -> F:
    """Attach every global option to a command or group."""
    for decls, kwargs in reversed(_OPTION_SPECS):
        names = [d for d in decls if d.startswith("-")]
        key = next((d for d in decls if not d.startswith("-")), None) or names[0].lstrip("-")
        key = key.replace("-", "_")
        opts = dict(kwargs)
        if not opts.get("is_flag"):
            opts.setdefault("default", None)
        func = click.option(
            *names, expose_value=False, is_eager=True, callback=_flag_store(key), **opts
        )(func)
    return func


# --- running ----------------------------------------------------------------


def run(
    main: Callable[[], Awaitable[T]],
    *,
    on_interrupt: Callable[[], str | None] | None = None,
    on_error: Callable[[BaseException], str | None] | None = None,
) -> T:
    """Run *main* with ``anyio.run(..., backend="asyncio")`` and map failures to
    exit codes: 1 for API/transport/transfer errors, 2 for client-side
    validation errors, 130 for Ctrl-C (after the command cleaned up)."""
    state = get_state()
    out = state.output
    in_main_thread = threading.current_thread() is threading.main_thread()
    try:
        return anyio.run(_terminable, main, in_main_thread, backend="asyncio")
    except BaseException as raised:
        exc = unwrap(raised)
    if isinstance(exc, (click.exceptions.Exit, click.ClickException, SystemExit)):
        raise exc
    # Python 3.11's asyncio runner turns Ctrl-C into KeyboardInterrupt; on 3.10
    # (anyio's runner backport) the cancelled main task's CancelledError escapes.
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        hint = on_interrupt() if on_interrupt else None
        out.error("interrupted", hint=hint)
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    if isinstance(exc, ValidationError):
        usage_error(state, validation_message(exc))
    _debug_traceback(state, exc)
    if isinstance(exc, IMSError):
        out.error(exc, hint=on_error(exc) if on_error else None)
    elif isinstance(exc, OSError):
        out.error(f"{type(exc).__name__}: {exc}")
    else:
        hint = None if state.debug else "run again with --debug for the traceback"
        out.error(f"unexpected {type(exc).__name__}: {exc}", hint=hint)
    raise click.exceptions.Exit(EXIT_ERROR)


async def _terminable(main: Callable[[], Awaitable[T]], watch: bool) -> T:
    """Run *main*; Ctrl-C (SIGINT) and SIGTERM cancel it through an anyio
    cancel scope — its cleanup runs (aborts, failed notifications), and a
    signal landing during a shielded step (a journal write, an abort) takes
    effect right after it instead of being lost — whatever SIGINT's
    disposition was (ignored under ``cmd &`` and nohup), then end the run as
    interrupted (exit 130).  A second Ctrl-C while cleaning up stops at once."""
    if not watch:
        return await main()
    interrupted = False
    result: T | None = None
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted = True
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signal)
        await anyio.lowlevel.checkpoint()  # the handlers are installed before main starts
        result = await main()
        tg.cancel_scope.cancel()
    if interrupted:
        raise KeyboardInterrupt
    return result  # type: ignore[return-value]


def unwrap(exc: BaseException) -> BaseException:
    """The lone exception inside (nested) exception groups, else *exc*.
    A group holding a KeyboardInterrupt anywhere counts as an interrupt."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if not isinstance(inner, tuple) or not inner:
            return exc
        for item in inner:
            if isinstance(unwrap(item), KeyboardInterrupt):
                return KeyboardInterrupt()
        if len(inner) != 1:
            return exc
        exc = inner[0]


def _debug_traceback(state: State, exc: BaseException) -> None:
    if state.debug:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(state.output.redact(text))


def validation_message(exc: ValidationError) -> str:
    field = f" (field {exc.field})" if getattr(exc, "field", None) else ""
    return f"invalid input{field}: {exc.message}"


DELETE_COLUMNS = (
    Column("ID", "id", priority=0),
    Column("RESULT", "result", priority=0),
    Column("ERROR", "error", get=lambda r: (r.get("error") or {}).get("code")
           or (r.get("error") or {}).get("message"), priority=1, truncate=True),
)


def delete_each(
    ids: Sequence[str], delete: Callable[[Any, str], Awaitable[None]], what: str
) -> None:
    """Delete ``ids`` one by one with ``delete(ims, id)``, going on past a
    failure, and report each target.  Exit 1 if any failed (2 if every
    failure was a client-side validation error).

    JSON: ``{"deleted": [ID, ...], "failed": [{"id", "error"}]}``."""
    state = get_state()
    out = state.output
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, IMSError]] = []

    async def main() -> None:
        async with state.session() as ims:
            for item in ids:
                try:
                    await delete(ims, item)
                except IMSError as exc:
                    failures.append((item, exc))
                    rows.append({"id": item, "result": "failed", "error": error_payload(exc)})
                else:
                    rows.append({"id": item, "result": "deleted", "error": None})

    run(main)
    document = {"deleted": [r["id"] for r in rows if r["result"] == "deleted"],
                "failed": [{"id": r["id"], "error": r["error"]} for r in rows
                           if r["result"] == "failed"]}
    done = len(document["deleted"])
    message = (f"deleted {what}{', '.join(document['deleted'])}" if not failures else
               f"{done} of {len(ids)} deleted; failed: "
               + ", ".join(item for item, _ in failures))
    out.show(View(DELETE_COLUMNS, rows, document=document, items_key=None,
                  message=None if failures else message,
                  footer=[message] if failures else []))
    for item, exc in failures:
        out.error(exc, hint=None, target=f"{what}{item}")
    if failures:
        usage = all(isinstance(e, ValidationError) for _, e in failures)
        raise click.exceptions.Exit(EXIT_USAGE if usage else EXIT_ERROR)
