"""``aioims upload FILE...`` and ``aioims download IMAGE_ID DEST``."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from ..errors import IMSError, ValidationError
from .context import State, get_state, global_options, run
from .images import create_kwargs, metadata_options
from .output import describe_error, error_payload, human_size, record_view, wire
from .progress import FINAL_STAGES, ProgressBoard, Tracker, human_rate_of, rate
from .render import Column, View
from .sample import parse_size

if TYPE_CHECKING:
    from ..transfer import TransferConfig

GiB = 1 << 30
QCOW2_MAGIC = b"QFI\xfb"


def transfer_config(part_size: str, concurrency: int) -> TransferConfig:
    """Files larger than one part go multipart; smaller ones in one PutObject."""
    from ..transfer import TransferConfig  # lazy: aiobotocore takes ~1 s to import

    size = parse_size(part_size)
    return TransferConfig(part_size=size, max_concurrency=concurrency,
                          multipart_threshold=max(1, min(size, 5 << 30)))


def checkpoint_dir() -> Path:
    return Path("~/.cache/aioims/checkpoints").expanduser()


def sniff(path: Path) -> tuple[str, int]:
    """(disk format, virtual disk size in bytes) from the file's first bytes."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(32)
    if head[:4] == QCOW2_MAGIC and len(head) >= 32:
        return "qcow2", max(int.from_bytes(head[24:32], "big"), size)
    return "raw", size


def name_from_file(path: Path) -> str:
    name = path.name.split(".")[0] or path.name
    name = re.sub(r"[^A-Za-z0-9._ -]+", "-", name).strip(" ")
    return (name or "image")[:128]


def resumable(exc: BaseException | None) -> bool:
    """Whether a failed upload can continue with ``--resume`` (parts and
    image kept): the error says so (``resumable``), or, for errors that do
    not say, the failure is in the ``transfer`` stage and its cause is
    resumable."""
    if exc is None:
        return False
    flag = getattr(exc, "resumable", None)
    if flag is not None:  # UploadFailedError.resumable: the coordinator's word
        return bool(flag)
    if getattr(exc, "stage", None) != "transfer":
        return False
    cause = exc.__cause__
    return bool(getattr(cause, "resumable", False))


def rerun_command(state: State, ctx: click.Context, path: Path, image_id: str,
                  *, resume: bool = True) -> str:
    """The exact ``aioims upload`` command that uploads *path* again into *image_id*
    (the token is never shown: it is read from ``$IMS_TOKEN``); with
    ``resume``, it continues from the parts already sent."""
    args: list[str] = ["aioims"]
    for key, value in state.flags.items():
        flag = "--" + key.replace("_", "-")
        if key == "token":
            args += [flag, "$IMS_TOKEN"]
        elif value is True:
            args.append(flag)
        else:
            args += [flag, str(value)]
    args += ["upload", str(path)]
    skip = {"files", "image_id", "resume", "name"}
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in skip or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params.get(param.name)
        opt = max(param.opts, key=len)
        if param.is_flag:
            if param.secondary_opts and not value:
                opt = max(param.secondary_opts, key=len)
            args.append(opt)
        elif param.multiple:
            for item in value or ():
                args += [opt, str(item)]
        elif value is not None:
            args += [opt, str(value)]
    args += ["--image-id", image_id] + (["--resume"] if resume else [])
    return " ".join('"$IMS_TOKEN"' if a == "$IMS_TOKEN" else shlex.quote(a) for a in args)


@click.command("upload")
@click.argument("files", metavar="FILE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@metadata_options(upload=True)
@click.option("--image-id", help="Upload into this existing image (queued, or failed earlier).")
@click.option("--resume", is_flag=True,
              help="Keep a checkpoint (~/.cache/aioims/checkpoints/) and continue from it; "
                   "on Ctrl-C or failure the parts sent are kept for the next --resume.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file to use with --resume (one FILE only; default: "
                   "~/.cache/aioims/checkpoints/upload-HASH.json).")
@click.option("--part-size", default="8M", show_default=True, metavar="SIZE",
              help="Multipart part size (>= 5M), e.g. 16M.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Parts in flight per image.")
@click.option("--jobs", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Images uploaded at once (several FILEs).")
@click.option("--delete-on-failure", is_flag=True, help="Delete the image if the upload fails.")
@global_options
def upload(files: tuple[Path, ...], name: str | None, image_id: str | None,
           resume: bool, checkpoint: Path | None, part_size: str, concurrency: int, jobs: int,
           delete_on_failure: bool, tags: tuple[str, ...], min_disk: int | None,
           disk_format: str | None, **fields: Any) -> None:
    """Upload image files: create the image, prepare, multipart upload to S3,
    report done, wait for 'active' and verify the checksum.

    Ctrl-C aborts cleanly (multipart upload aborted, image marked failed) and
    prints the command that retries; with --resume the parts already sent are
    kept and the next --resume continues from them.

    Columns: file, imageId, status, size, sent, transfer, rate, seconds.
    JSON: {"items": [image, ...], "failed": [{"file", "imageId", "error"}], "bytes": N,
    "seconds": T, "transfer": {"bytes", "seconds", "bytesPerSecond"}}.
    """
    from .. import validation

    state = get_state()
    ctx = click.get_current_context()
    if len(files) > 1 and (name or image_id or checkpoint):
        raise click.UsageError("--name, --image-id and --checkpoint take a single FILE")
    if checkpoint and not resume:
        raise click.UsageError("--checkpoint goes with --resume")
    try:
        config = transfer_config(part_size, concurrency)
    except (ValueError, ValidationError) as exc:
        raise click.BadParameter(str(exc), param_hint="--part-size") from None
    names = {f: name or name_from_file(f) for f in files}
    try:
        for value in names.values():
            validation.check_name(value)
        if fields.get("description") is not None:
            validation.check_description(fields["description"])
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint="--name/--description") from None
    state.require("endpoint", "region")
    base = {} if image_id else create_kwargs(fields, tags)

    sizes = {f: f.stat().st_size for f in files}
    images: dict[Path, dict[str, Any]] = {}
    failures: list[tuple[Path, BaseException]] = []
    trackers: dict[Path, Tracker] = {}
    started = time.monotonic()

    async def one(ims: Any, board: ProgressBoard, path: Path) -> None:
        from ..uploader import Uploader

        tracker = trackers[path] = board.track(path.name, sizes[path])
        fmt, virtual = await anyio.to_thread.run_sync(sniff, path)
        create = {}
        if not image_id:
            create = dict(base, name=names[path], disk_format=disk_format or fmt,
                          min_disk=min_disk if min_disk is not None else virtual // GiB + 1)
        uploader = Uploader(ims, config=config, progress=tracker,
                            checkpoint_dir=checkpoint_dir() if resume else None,
                            delete_on_failure=delete_on_failure)
        try:
            image = await uploader.upload(path, image_id=image_id, checkpoint=checkpoint,
                                          **create)
            tracker.complete()
            images[path] = wire(image)
        except IMSError as exc:
            tracker.fail()
            failures.append((path, exc))
            board.line(state.output.redact(f"[{path.name}] failed: {describe_error(exc)}"))

    async def main() -> None:
        async with state.session() as ims:
            with ProgressBoard(state.progress_mode, console=state.output.stderr) as board:
                if len(files) > 1:  # every size summed before the first byte: a right ETA
                    board.enable_overall(sum(sizes.values()), files=len(files))
                limiter = anyio.CapacityLimiter(jobs)

                async def guarded(path: Path) -> None:
                    async with limiter:
                        await one(ims, board, path)

                async with anyio.create_task_group() as tg:
                    for path in files:
                        tg.start_soon(guarded, path)

    def _image_of(path: Path, exc: BaseException | None = None) -> str | None:
        found = getattr(exc, "image_id", None)
        if not found and path in trackers:
            found = trackers[path].image_id
        return found if isinstance(found, str) and found else None

    def on_interrupt() -> str:
        lines = []
        for path in files:
            if path in images:
                continue
            target = trackers[path].image_id if path in trackers else None
            if target is None:
                lines.append(f"{path}: nothing uploaded yet")
                continue
            tracker = trackers[path]
            where = (tracker.last_working_stage if tracker.stage in FINAL_STAGES
                     else tracker.stage)
            kept = resume and where in ("preparing", "uploading")
            if kept:
                lines.append(f"{path}: upload into {target} interrupted (parts kept for "
                             f"--resume); resume with:\n"
                             f"  {rerun_command(state, ctx, path, target)}")
            elif where in ("saving", "verifying"):
                lines.append(f"{path}: interrupted while the service was checking image "
                             f"{target} (every byte was sent); see `aioims images show "
                             f"{target}`; if it is not active, upload again with:\n"
                             f"  {rerun_command(state, ctx, path, target, resume=resume)}")
            else:
                lines.append(f"{path}: upload into {target} interrupted (multipart upload "
                             f"aborted, image marked failed); upload again with:\n"
                             f"  {rerun_command(state, ctx, path, target, resume=resume)}")
        return "\n".join(lines)

    run(main, on_interrupt=on_interrupt)
    elapsed = time.monotonic() - started
    done = [f for f in files if f in images]
    sent = sum(trackers[f].sent for f in done)
    span = _transfer_span([trackers[f] for f in done])
    speed = rate(sent, span)
    rows = [dict(images[f], file=str(f), sent=trackers[f].sent,
                 transfer=round(trackers[f].transfer_seconds, 3),
                 bytesPerSecond=_int(trackers[f].rate), seconds=round(trackers[f].elapsed, 3))
            for f in done]
    data: dict[str, Any] = {
        "items": [images[f] for f in done],
        "failed": [{"file": str(f), "imageId": _image_of(f, e), "error": error_payload(e)}
                   for f, e in failures],
        "bytes": sum(sizes[f] for f in done),
        "seconds": round(elapsed, 3),
        "transfer": {"bytes": sent, "seconds": round(span, 3), "bytesPerSecond": _int(speed)},
    }
    footer = []
    if rows:
        footer.append(f"uploaded {len(rows)} image(s): {human_size(sent)} sent in {span:.1f} s "
                      f"of transfer ({human_rate_of(speed)}), {elapsed:.1f} s in all")
    state.output.show(View(UPLOAD_COLUMNS, rows, document=data, footer=footer))
    for path, failure in failures:
        hint = None
        failed_id = _image_of(path, failure)
        if failed_id and not delete_on_failure:
            if resume and resumable(failure):
                hint = f"resume with: {rerun_command(state, ctx, path, failed_id)}"
            else:
                hint = ("upload again with: "
                        + rerun_command(state, ctx, path, failed_id, resume=resume))
        state.output.error(failure, hint=hint, target=str(path))
    if failures:
        usage = all(isinstance(e, ValidationError) for _, e in failures)
        raise click.exceptions.Exit(2 if usage else 1)


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _transfer_span(trackers: list[Tracker]) -> float:
    """Wall seconds from the first transfer's start to the last one's end."""
    spans = [(t.transfer_started, t.transfer_started + t.transfer_seconds)
             for t in trackers if t.transfer_started is not None]
    if not spans:
        return 0.0
    return max(e for _, e in spans) - min(s for s, _ in spans)


def _secs(value: Any) -> str:
    return "-" if value is None else f"{value:.1f} s"


UPLOAD_COLUMNS = (
    Column("FILE", "file", priority=0, truncate=True),
    Column("IMAGE ID", "imageId", priority=0, aliases=("id",)),
    Column("STATUS", "status", priority=1),
    Column("SIZE", "size", show=human_size, right=True, priority=1),
    Column("SENT", "sent", show=human_size, right=True, priority=3),
    Column("TRANSFER", "transfer", show=_secs, right=True, priority=2),
    Column("RATE", "bytesPerSecond", show=human_rate_of, right=True, priority=1,
           aliases=("rate",)),
    Column("TOTAL", "seconds", show=_secs, right=True, priority=3, aliases=("time",)),
)


@click.command("download")
@click.argument("image_id")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--resume", is_flag=True, help="Continue a partial download (DEST.part).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check the MD5 against the image's checksum.")
@global_options
def download(image_id: str, dest: Path, resume: bool, verify: bool) -> None:
    """Download an active private image to DEST (a file, or a directory to put
    IMAGE_ID.FORMAT in).  Writes DEST.part and renames it when complete.

    JSON: {"imageId", "path", "bytes", "seconds", "bytesPerSecond", "verified", "checksum"}.
    """
    state = get_state()
    result: dict[str, Any] = {}

    async def main() -> None:
        async with state.session() as ims:
            image = await ims.get_image(image_id)
            target = dest
            if await anyio.Path(dest).is_dir():
                target = dest / f"{image_id}.{image.disk_format or 'img'}"
            result["path"] = str(target)
            with ProgressBoard(state.progress_mode, console=state.output.stderr) as board:
                tracker = board.track(image_id, image.size, kind="download")
                written = await ims.download_private_image(
                    image_id, target, resume=resume, verify=verify, progress=tracker
                )
                tracker.complete()
            seconds = tracker.transfer_seconds
            speed = tracker.rate
            result.update(imageId=image_id, bytes=written, seconds=round(seconds, 3),
                          bytesPerSecond=_int(speed), verified=verify, checksum=image.checksum,
                          sent=tracker.sent)

    def on_interrupt() -> str:
        path = result.get("path", str(dest))
        return (f"partial file kept as {path}.part; resume with:\n"
                f"  aioims download {shlex.quote(image_id)} {shlex.quote(str(dest))} --resume")

    run(main, on_interrupt=on_interrupt)
    message = (f"downloaded {image_id} to {result['path']}: {human_size(result['sent'])} in "
               f"{result['seconds']:.1f} s ({human_rate_of(result['bytesPerSecond'])})"
               + (", checksum verified" if verify else ""))
    document = {k: v for k, v in result.items() if k != "sent"}
    state.output.show(record_view(DOWNLOAD_COLUMNS, result, document, message))


DOWNLOAD_COLUMNS = (
    Column("IMAGE ID", "imageId", priority=0, aliases=("id",)),
    Column("PATH", "path", priority=0, truncate=True),
    Column("SIZE", "bytes", show=human_size, right=True, priority=1),
    Column("TIME", "seconds", show=_secs, right=True, priority=2),
    Column("RATE", "bytesPerSecond", show=human_rate_of, right=True, priority=1),
    Column("VERIFIED", "verified", priority=2),
)



