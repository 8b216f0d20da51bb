"""``aioims emulator``: run the local IMS emulator in the foreground.

The options mirror ``python -m aioims.emulator``'s; the emulator runs
in-process (:class:`aioims.emulator.Emulator`) and prints its URL, the users'
tokens and ready-to-paste ``export`` lines, then the same machine-parsable
``IMS emulator ready at URL`` line as the module; Ctrl-C (or SIGTERM) stops it
cleanly with exit 0.  Options this command does not know (for example ones
added to the module later) are handed to ``python -m aioims.emulator``, which
then runs in place of this process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .context import get_state, global_options, run
from .demo import banner, print_lines, require_emulator_extra, wait_for_ctrl_c

_PASS = {
    "host": "--host", "port": "--port", "data_dir": "--data-dir", "s3_endpoint": "--s3-endpoint",
    "s3_access_key": "--s3-access-key", "s3_secret_key": "--s3-secret-key",
    "s3_region": "--s3-region", "credential_lifetime": "--credential-lifetime",
    "users_file": "--config", "faults": "--faults", "seed": "--seed",
}


@click.command(
    "emulator",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port of the IMS API (0 = a free port).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="SQLite database directory (default: a temporary one, removed at exit).")
@click.option("--s3-endpoint", metavar="URL",
              help="External S3-compatible server (default: embedded moto).")
@click.option("--s3-access-key", default="testing", show_default=True)
@click.option("--s3-secret-key", default="testing", show_default=True)
@click.option("--s3-region", default="us-east-1", show_default=True)
@click.option("--no-s3-front", is_flag=True,
              help="Hand out the S3 server itself instead of the fault-injecting S3 front.")
@click.option("--credential-lifetime", type=click.FloatRange(min=0, min_open=True),
              default=3600.0, show_default=True,
              help="Lifetime (s) of the S3 credentials upload-prepare hands out.")
@click.option("--users-file", "--config", "users_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Extra users (JSON), see docs/emulator.md.")
@click.option("--faults", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Fault rules file (JSON).")
@click.option("--seed", type=int, help="Seed of the fault RNG.")
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@global_options
def emulator(extra: tuple[str, ...], no_s3_front: bool, access_log: bool,
             **opts: Any) -> None:
    """Run the local IMS emulator (with its embedded S3) until Ctrl-C.

    JSON (--json): one line {"url", "s3Url", "dataDir", "users": [...]} once it is ready.
    """
    state = get_state()
    if extra:
        _exec_module(extra, no_s3_front, access_log, opts)
    if opts["s3_endpoint"] is None:
        require_emulator_extra()

    from ..emulator import Emulator

    temporary = opts["data_dir"] is None
    directory: Path = opts["data_dir"] or Path(tempfile.mkdtemp(prefix="aioims-emulator-"))

    async def main() -> None:
        emu = Emulator(
            directory, host=opts["host"], port=opts["port"], s3_endpoint=opts["s3_endpoint"],
            s3_access_key=opts["s3_access_key"], s3_secret_key=opts["s3_secret_key"],
            s3_region=opts["s3_region"], s3_front=not no_s3_front,
            credential_lifetime=opts["credential_lifetime"], config=opts["users_file"],
            faults=opts["faults"], seed=opts["seed"], access_log=access_log,
        )
        async with emu:
            url = str(emu.url)
            users = [u.to_json() for u in emu.users.values()]
            if state.json_mode:  # one line: scripts read it while the emulator runs
                sys.stdout.write(json.dumps({"url": url, "s3Url": emu.s3_url,
                                             "dataDir": str(directory), "users": users}) + "\n")
            else:
                lines = banner(url, directory, users)
                lines.insert(2, f"S3 server: {emu.s3_url}")
                # as they are, never soft-wrapped: the export lines stay copy-paste safe
                print_lines([*lines, f"IMS emulator ready at {url}"], sys.stdout)
            sys.stdout.flush()
            await wait_for_ctrl_c()
        state.output.info("emulator stopped")

    try:
        run(main)
    finally:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)


def _exec_module(extra: tuple[str, ...], no_s3_front: bool, access_log: bool,
                 opts: dict[str, Any]) -> None:
    args = [sys.executable, "-m", "aioims.emulator"]
    for key, flag in _PASS.items():
        if opts.get(key) is not None:
            args += [flag, str(opts[key])]
    if no_s3_front:
        args.append("--no-s3-front")
    if access_log:
        args.append("--access-log")
    args += [a for a in extra if a != "--"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, args)  # noqa: S606 - our own module, an argv list
