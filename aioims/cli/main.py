"""The ``aioims`` command line: entry point and command tree.

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

import click

from .. import __version__
from .context import State, get_state, global_options
from .demo import demo
from .emulator_cmd import emulator
from .images import images
from .migrate import migrate
from .misc import buckets, export_cmd, import_cmd
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
    """Show the resolved configuration and where each value came from (no secrets)."""
    state = get_state()
    data = state.settings().describe()

    def render() -> None:
        for key, value in data.items():
            if key == "sources":
                continue
            source = data["sources"].get(_snake(key), "")
            state.output.print(f"{key:16} {value if value is not None else '-'}"
                               + (f"  ({source})" if source else ""))

    state.output.result(data, render)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


for command in (images, upload, download, share, unshare, shares, shared, import_cmd,
                export_cmd, buckets, emulator, demo, migrate):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``aioims = "aioims.cli.main:main"``)."""
    cli.main(args=argv, prog_name="aioims", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main()
