"""``python -m aioims.emulator``: run the IMS emulator until interrupted.

Prints the users, the S3 endpoints and, last, one machine-parsable line::

    IMS emulator ready at http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from ..logs import install_redaction
from .s3auth import check_lifetime
from .server import READY_PREFIX, Emulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aioims.emulator", description="CECSTACK IMS API v1 emulator"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to listen on (0: pick a free one)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory of the SQLite database (default: a temporary one, removed at exit)",
    )
    parser.add_argument(
        "--s3-endpoint", default=None, help="external S3-compatible server (default: embedded)"
    )
    parser.add_argument("--s3-access-key", default="testing")
    parser.add_argument("--s3-secret-key", default="testing")
    parser.add_argument("--s3-region", default="us-east-1")
    parser.add_argument(
        "--no-s3-front",
        action="store_true",
        help="hand out the S3 server itself (and its keys) instead of the S3 front",
    )
    parser.add_argument(
        "--credential-lifetime",
        type=float,
        default=3600.0,
        help="lifetime in seconds of the S3 credentials upload-prepare hands out",
    )
    parser.add_argument("--config", type=Path, default=None, help="users file (JSON)")
    parser.add_argument("--faults", type=Path, default=None, help="fault rules file (JSON)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="stop when stdin reaches end of file (for test harnesses)",
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("IMS_EMULATOR_ADMIN_TOKEN") or None,
        help="require 'X-Emulator-Admin-Token: TOKEN' on the admin API (/_emulator/); "
        "default: $IMS_EMULATOR_ADMIN_TOKEN, else no token",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    # os.read on the raw descriptor: a daemon thread blocked inside the
    # buffered sys.stdin would abort the interpreter at exit.
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    with contextlib.suppress(RuntimeError):  # the loop is already closed
        loop.call_soon_threadsafe(stop.set)


async def serve(args: argparse.Namespace, data_dir: Path) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
            loop.add_signal_handler(signum, stop.set)
    if args.exit_with_stdin:
        threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
    emulator = Emulator(
        data_dir,
        host=args.host,
        port=args.port,
        s3_endpoint=args.s3_endpoint,
        s3_access_key=args.s3_access_key,
        s3_secret_key=args.s3_secret_key,
        s3_region=args.s3_region,
        s3_front=not args.no_s3_front,
        credential_lifetime=args.credential_lifetime,
        config=args.config,
        faults=args.faults,
        seed=args.seed,
        access_log=args.access_log,
        admin_token=args.admin_token,
    )
    async with emulator:
        print(f"data dir: {data_dir}")
        print(f"S3 server: {emulator.s3_url}")
        print(f"upload domain: {emulator.upload_domain}")
        print("users (emulator convention: Authorization: Bearer <token>):")
        for user in emulator.users.values():
            print(
                f"  {user.user_name}: token={user.token} user_id={user.user_id} "
                f"tenant_id={user.tenant_id} department_id={user.department_id}"
            )
        print(f"{READY_PREFIX}{emulator.url}", flush=True)
        await stop.wait()
        logging.getLogger("aioims.emulator").info("stopping")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.s3_endpoint is None:  # the embedded S3 server is moto's
        import importlib.util

        try:
            has_moto = importlib.util.find_spec("moto") is not None
        except ImportError:
            has_moto = False
        if not has_moto:
            sys.stderr.write(
                "python -m aioims.emulator: the embedded S3 server needs moto: "
                "pip install 'aioims[emulator]' (or pass --s3-endpoint URL)\n"
            )
            return 2
    try:
        check_lifetime(args.credential_lifetime)
    except ValueError as exc:
        sys.stderr.write(f"python -m aioims.emulator: --credential-lifetime: {exc}\n")
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_redaction()  # --log-level DEBUG: no S3 secrets or bearer tokens in the log
    if not args.access_log:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="ims-emulator-")) if temporary else args.data_dir
    try:
        asyncio.run(serve(args, data_dir))
    except KeyboardInterrupt:  # pragma: no cover
        pass
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
