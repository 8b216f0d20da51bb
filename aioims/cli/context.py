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
import attrs
import click

from ..errors import IMSError, ValidationError
from . import config as config_mod
from .output import Output
from .progress import MODES, pick_mode

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
        self._output.json_mode = self.json_mode
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
        assert settings.endpoint is not None and settings.region is not None
        return IMSSession(
            settings.endpoint,
            settings.region,
            auth=auth,
            verify_ssl=not settings.insecure,
            ca_bundle=None if settings.insecure else settings.ca_bundle,
        )


def get_state() -> State:
    return click.get_current_context().ensure_object(State)


def usage_error(state: State, message: str) -> NoReturn:
    state.output.error(message)
    raise click.exceptions.Exit(EXIT_USAGE)


# --- global options ---------------------------------------------------------


def _flag_store(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None or value is False:
            return value
        state = ctx.ensure_object(State)
        if key == "json":
            state.json_mode = True
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
    logging.basicConfig(
        level=logging.DEBUG,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
    (("--json", "json"), {"is_flag": True, "help": "Machine-readable JSON on stdout."}),
    (("--quiet", "-q", "quiet"), {"is_flag": True, "help": "No progress bars or notes."}),
    (("--progress", "progress"),
     {"type": click.Choice(MODES), "metavar": "MODE",
      "help": "Progress display: auto (bars on a terminal), bar, plain (lines), none."}),
    (("--debug", "debug"),
     {"is_flag": True, "help": "Debug logging on stderr (secrets redacted)."}),
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
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return anyio.run(main, backend="asyncio")
    except BaseException as raised:
        exc = unwrap(raised)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if isinstance(exc, (click.exceptions.Exit, click.ClickException, SystemExit)):
        raise exc
    # Python 3.11's asyncio runner turns Ctrl-C into KeyboardInterrupt; on 3.10
    # (anyio's runner backport) the cancelled main task's CancelledError escapes.
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        hint = on_interrupt() if on_interrupt else None
        out.error("interrupted", hint=hint)
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    if isinstance(exc, ValidationError):
        field = f" (field {exc.field})" if getattr(exc, "field", None) else ""
        out.error(f"invalid input{field}: {exc.message}")
        raise click.exceptions.Exit(EXIT_USAGE)
    _debug_traceback(state, exc)
    if isinstance(exc, IMSError):
        out.error(exc, hint=on_error(exc) if on_error else None)
    elif isinstance(exc, OSError):
        out.error(f"{type(exc).__name__}: {exc}")
    else:
        hint = None if state.debug else "run again with --debug for the traceback"
        out.error(f"unexpected {type(exc).__name__}: {exc}", hint=hint)
    raise click.exceptions.Exit(EXIT_ERROR)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM stops a command like Ctrl-C does (clean abort, exit 130), via
    the SIGINT handler the asyncio runner installs; without it, die as usual."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        signal.raise_signal(signal.SIGINT)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


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


def delete_each(
    ids: Sequence[str], delete: Callable[[Any, str], Awaitable[None]], what: str
) -> None:
    """Delete ``ids`` one by one with ``delete(ims, id)``; on a failure, say
    which were deleted before it.  JSON: ``{"deleted": [...]}``."""
    state = get_state()
    deleted: list[str] = []

    async def main() -> None:
        async with state.session() as ims:
            for item in ids:
                await delete(ims, item)
                deleted.append(item)

    run(main, on_error=lambda exc: f"deleted before the failure: {deleted or 'none'}")
    state.output.result(
        {"deleted": deleted},
        lambda: state.output.print("\n".join(f"deleted {what}{i}" for i in deleted)),
    )
