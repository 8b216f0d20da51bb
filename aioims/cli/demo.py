"""``aioims demo``: the whole upload/download flow against an embedded emulator.

Starts the emulator (with its embedded S3) on free ports in a temporary data
directory, writes a sample qcow2 disk image, uploads it as alice through the
full flow (create -> prepare -> multipart -> done -> wait active -> verify),
downloads it back with verification, compares the MD5 of both files and prints
a summary.  ``--keep-running`` then keeps the emulator up until Ctrl-C.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import click

from ..errors import ChecksumMismatchError, ValidationError
from .config import EMULATOR_USERS
from .context import get_state, global_options, run, usage_error
from .output import human_size
from .progress import ProgressBoard, Tracker, human_rate_of
from .render import Column, View
from .sample import CLUSTER, parse_size, write_sample_image
from .transfer import transfer_config

DEMO_REGION = "region0"
DEMO_TOKEN = "token-alice"  # noqa: S105 - the emulator's built-in user


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if size < 1 << 20:
        raise click.BadParameter("must be at least 1M")
    return size


def _check_part_size(value: str) -> str:
    try:
        transfer_config(value, 1)
    except (ValueError, ValidationError) as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def banner(url: str, data_dir: Path | None = None,
           users: list[dict[str, str]] | None = None) -> list[str]:
    """How to talk to a running emulator (printed by demo and emulator)."""
    lines = [f"IMS emulator listening on {url}"]
    if data_dir is not None:
        lines.append(f"data directory: {data_dir}")
    lines.append("users (Authorization: Bearer <token>):")
    if users is None:
        users = [{"token": t, "tenantId": ten, "departmentId": dep}
                 for t, (ten, dep) in EMULATOR_USERS.items()]
    for user in users:
        lines.append(f"  {user.get('userName') or user['token']}: token={user['token']} "
                     f"user_id={user.get('userId', '-')} tenant_id={user['tenantId']} "
                     f"department_id={user['departmentId']}")
    lines += [
        "try:",
        *(f"  {line}" for line in export_lines(url)),
        "  aioims images list",
        "press Ctrl-C to stop",
    ]
    return lines


def export_lines(url: str) -> list[str]:
    """One ``export`` per line: each stays whole on a narrow terminal."""
    return [f"export IMS_ENDPOINT={url}", f"export IMS_REGION={DEMO_REGION}",
            f"export IMS_TOKEN={DEMO_TOKEN}"]


def print_lines(lines: list[str], stream: Any = None) -> None:
    """Print lines as they are: never soft-wrapped (copy-paste safe)."""
    out = stream or sys.stderr
    out.write("".join(line + "\n" for line in lines))
    out.flush()


def require_emulator_extra() -> None:
    """Exit 2 with the install hint when moto (the embedded S3) is missing."""
    import importlib.util

    try:
        found = importlib.util.find_spec("moto") is not None
    except ImportError:
        found = False
    if not found:
        usage_error(get_state(), "the embedded S3 server of the emulator needs moto: "
                                 "pip install 'aioims[emulator]'")


async def wait_for_ctrl_c() -> None:
    """Return on SIGINT/SIGTERM (a normal way to stop: exit 0)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


@click.command("demo")
@click.option("--size", "size", default="256M", show_default=True, callback=_size,
              metavar="SIZE", help="Size of the sample image, e.g. 64M, 1G.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the sample, the download and the emulator data here "
                   "(default: a temporary directory, removed afterwards).")
@click.option("--keep-running", is_flag=True,
              help="Keep the emulator running afterwards (prints URL and tokens) until Ctrl-C.")
@click.option("--part-size", default="8M", show_default=True, metavar="SIZE",
              callback=lambda c, p, v: _check_part_size(v), help="Multipart part size.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=4, show_default=True,
              help="Parts in flight.")
@global_options
def demo(size: int, workdir: Path | None, keep_running: bool, part_size: str,
         concurrency: int) -> None:
    """Run the whole flow end to end on an embedded emulator (no network needed).

    JSON: {"ok", "endpoint", "imageId", "file", "size", "diskFormat", "md5",
    "serviceChecksum", "downloadedMd5", "upload": {"seconds", "bytesPerSecond"},
    "download": {"seconds", "bytesPerSecond"}}.
    """
    from .. import HeaderAuth, IMSSession
    from ..emulator import Emulator
    from .sample import md5_file

    state = get_state()
    out = state.output
    require_emulator_extra()
    config = transfer_config(part_size, concurrency)
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="aioims-demo-")) if workdir is None else workdir
    summary: dict[str, Any] = {"ok": False}

    async def main() -> None:
        await anyio.Path(root).mkdir(parents=True, exist_ok=True)
        data_dir = root / "emulator-data"
        sample = root / "sample.qcow2"
        downloaded = root / "downloaded.qcow2"
        out.info(f"writing a {human_size(size)} qcow2 sample image to {sample}")
        written, local_md5 = await anyio.to_thread.run_sync(write_sample_image, sample, size)
        tenant, department = EMULATOR_USERS[DEMO_TOKEN]
        out.info("starting the embedded emulator (IMS API + S3)")
        async with Emulator(data_dir, port=0) as emu:
            url = str(emu.url)
            summary.update(endpoint=url, file=str(sample), size=written, diskFormat="qcow2",
                           md5=local_md5)
            auth = HeaderAuth({"Authorization": f"Bearer {DEMO_TOKEN}"})
            async with IMSSession(url, DEMO_REGION, auth=auth) as ims:
                with ProgressBoard(state.progress_mode, console=out.stderr) as board:
                    tracker = board.track("upload", written)
                    image = await ims.upload_image(
                        sample, config=config, progress=tracker,
                        name="aioims-demo", description="sample image of aioims demo",
                        disk_format="qcow2", min_disk=max(1, written // (1 << 30) + 1),
                        min_ram=512, image_type="os_image", instruction="64-bits",
                        cpu_arch="x86", os_type="linux", platform="other",
                        visibility="private", usage="ecs", tenant_id=tenant,
                        department_id=department, os_version="demo",
                    )
                    tracker.complete()
                    summary.update(imageId=image.image_id, status=str(image.status),
                                   serviceChecksum=image.checksum,
                                   upload=_rate(tracker))
                    if (image.checksum or "").lower() != local_md5:
                        raise ChecksumMismatchError(
                            "the service's checksum differs from the local MD5",
                            expected=local_md5, actual=str(image.checksum))
                    tracker = board.track("download", written, kind="download")
                    got = await ims.download_private_image(
                        image.image_id, downloaded, verify=True, progress=tracker)
                    tracker.complete()
                downloaded_md5 = await anyio.to_thread.run_sync(md5_file, downloaded)
                summary.update(downloadedMd5=downloaded_md5, downloadedBytes=got,
                               download=_rate(tracker))
                if downloaded_md5 != local_md5 or got != written:
                    raise ChecksumMismatchError(
                        "the downloaded file differs from the uploaded one",
                        expected=local_md5, actual=downloaded_md5)
            summary["ok"] = True
            _print_summary(summary)
            if keep_running:
                users = [u.to_json() for u in emu.users.values()]
                print_lines(banner(url, data_dir, users))
                await wait_for_ctrl_c()

    try:
        run(main)
    finally:
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)


def _rate(tracker: Tracker) -> dict[str, Any]:
    """Bytes sent, transfer seconds and their rate (the CLI's one rate)."""
    speed = tracker.rate
    return {"seconds": round(tracker.transfer_seconds, 3), "bytes": tracker.sent,
            "bytesPerSecond": int(speed) if speed else None}


def _moved(part: dict[str, Any]) -> str:
    return (f"{human_size(part['bytes'])} in {part['seconds']:.2f} s "
            f"({human_rate_of(part['bytesPerSecond'])})")


SUMMARY_COLUMNS = (
    Column("result", "ok", show=lambda ok: "OK: uploaded, verified, downloaded, identical"
           if ok else "FAILED"),
    Column("endpoint", "endpoint"),
    Column("image id", "imageId", aliases=("id",)),
    Column("file", "file", get=lambda s: f"{s['file']} ({s['diskFormat']}, "
           f"{human_size(s['size'])}, {s['size'] // CLUSTER} clusters)"),
    Column("upload", "upload", show=_moved),
    Column("download", "download", show=_moved),
    Column("md5", "md5", show=lambda md5: f"{md5} (local = service checksum = downloaded)"),
)


def _print_summary(summary: dict[str, Any]) -> None:
    state = get_state()
    if state.output.fmt == "table" and not state.output.columns:
        state.output.write("aioims demo summary\n")
    state.output.show(View(SUMMARY_COLUMNS, [summary], document=summary, vertical=True))
