"""The ``aioims`` command tree (click); :func:`run_cli` runs it and turns
every usage error into one line on stderr (or JSON on stdout under
``-f json``) with exit code 2.  The console script enters through
:mod:`aioims.cli.main`, which checks the ``cli`` extra first.

::

    aioims [GLOBAL OPTIONS] COMMAND ...

    images list|show|update|delete|wait     private (and public) images
    upload FILE...                          create + upload + wait + verify
    download IMAGE_ID DEST                  resumable, verified download
    share / unshare / shares                share an image with users
    shared list|delete|copy                 images shared with you
    import / export / buckets               import from a URL, export to OSS
    migrate MANIFEST                        bulk, resumable migration of many images
    emulator                                run the local emulator
    demo                                    end-to-end demo on an embedded emulator
    config                                  show the resolved configuration

Exit codes: 0 success, 1 API/transport/transfer error (code and request id on
stderr), 2 usage or client-side validation error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from .. import __version__
from .context import State, get_state, global_options
from .demo import demo
from .emulator_cmd import emulator
from .images import images
from .migrate import migrate
from .misc import buckets, export_cmd, import_cmd
from .output import write_usage_error
from .render import Column, View
from .shares import share, shared, shares, unshare
from .transfer import download, upload


@click.group(
    name="aioims",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="aioims")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Command line for the CECSTACK Image Management Service (IMS) API v1.

    Configuration: flags > IMS_* environment variables > profile file
    (~/.config/aioims/config.toml, IMS_CONFIG_FILE).  See `aioims config`.
    """
    ctx.ensure_object(State)


@cli.command("config")
@global_options
def config_cmd() -> None:
    """Show the resolved configuration and where each value came from (no secrets).

    Columns: key, value, source.  JSON: the settings and their "sources".
    """
    state = get_state()
    data = state.settings().describe()
    sources = data.get("sources") or {}
    rows = [{"key": key, "value": value, "source": sources.get(_snake(key)) or None}
            for key, value in data.items() if key != "sources"]
    columns = (Column("KEY", "key", priority=0), Column("VALUE", "value", priority=0,
                                                        truncate=True),
               Column("SOURCE", "source", priority=1))
    state.output.show(View(columns, rows, document=data, items_key=None))


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


for command in (images, upload, download, share, unshare, shares, shared, import_cmd,
                export_cmd, buckets, emulator, demo, migrate):
    cli.add_command(command)


def json_requested(argv: Sequence[str]) -> bool:
    """Whether the command line asks for JSON (looked up in argv itself: a
    usage error can stop parsing before ``--json`` is seen)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--json" or arg in ("--format=json", "-fjson"):
            return True
        if arg in ("-f", "--format") and i + 1 < len(args) and args[i + 1] == "json":
            return True
    return False


def run_cli(argv: Sequence[str]) -> int:
    """Run the command line on ``argv``; the exit code."""
    try:
        code = cli.main(args=list(argv), prog_name="aioims", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return 2
    except click.ClickException as exc:
        message = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and ctx is not None:
            message += f" (see '{ctx.command_path} --help')"
        if exc.exit_code == 2 or isinstance(exc, click.UsageError):
            write_usage_error(message, json_requested(argv))
            return 2
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort as exc:
        import sys

        if isinstance(exc.__cause__, KeyboardInterrupt):  # Ctrl-C before anything ran
            sys.stderr.write("\nError: interrupted\n")
            return 130
        sys.stderr.write("Aborted!\n")
        return 1
    return code if isinstance(code, int) else 0
