"""``aioims migrate MANIFEST``: bulk, resumable image migration (see
``docs/migration.md`` and :mod:`aioims.migrate`)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

from ..errors import ValidationError
from .context import State, get_state, global_options, run, usage_error
from .output import human_size
from .progress import EtaColumn, RateColumn, human_rate_of, rate
from .render import Column, View

EXIT_FAILED = 1


def _shard(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    index, sep, count = value.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise click.BadParameter(f"expected I/N with 0 <= I < N, got {value!r}",
                                 param_hint="--shard")  # fmt: skip
    return int(index), int(count)


def _target(state: State, manifest: Any) -> Any:
    """The target session: flags > IMS_* env > profile > the manifest's ``target``."""
    from .. import HeaderAuth, IMSSession

    settings = state.settings()
    target = manifest.target
    endpoint = settings.endpoint or target.get("endpoint")
    region = settings.region or target.get("region")
    token = settings.token
    if not token and target.get("token_env"):
        token = os.environ.get(target["token_env"])
    token = token or target.get("token")
    if not endpoint or not region:
        raise click.UsageError("no target endpoint/region: pass --endpoint/--region, set "
                               "IMS_ENDPOINT/IMS_REGION, or give 'target' in the manifest")
    state.output.add_secret(token)
    insecure = settings.insecure or bool(target.get("insecure"))
    ca_bundle = None if insecure else (settings.ca_bundle or target.get("ca_bundle"))
    return IMSSession(endpoint, region, auth=HeaderAuth.bearer(token) if token else None,
                      verify_ssl=not insecure, ca_bundle=ca_bundle)


class _Display:
    """Progress on stderr: an overall bar plus one bar per image moving
    (``bar``), or one line per notable event (``plain``)."""

    def __init__(self, mode: str, console: Console) -> None:
        self.mode = mode
        self.console = console
        self.progress: Progress | None = None
        self.overall: TaskID | None = None
        self.tasks: dict[str, TaskID] = {}
        self.labels: dict[str, str] = {}
        self._last_line = 0.0
        if mode == "bar":
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                DownloadColumn(binary_units=True), RateColumn(), EtaColumn(),
                console=console, refresh_per_second=4,
            )  # fmt: skip

    def __enter__(self) -> _Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        elif self.mode == "plain":
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def __call__(self, event: Any) -> None:
        from .. import migrate as mig

        if isinstance(event, mig.MigrationStarted):
            self.line(f"migration {event.run_id}: {event.entries} entries "
                      f"({event.already_done} already done), at most {event.images} images "
                      f"and {event.parts} parts in flight"
                      + (f", {human_size(event.bandwidth)}/s" if event.bandwidth else ""))
        elif isinstance(event, mig.EntryStarted):
            self.labels[event.entry_id] = event.name or event.entry_id
            if event.stage != "pending":
                self.line(f"[{self._label(event.entry_id)}] continuing from {event.stage}")
        elif isinstance(event, mig.EntryTransfer):
            name = type(event.event).__name__
            if name == "TransferStarted" and self.progress is not None:
                total = getattr(event.event, "total_bytes", None)
                done = getattr(event.event, "resumed_bytes", 0)
                if event.entry_id not in self.tasks:
                    self.tasks[event.entry_id] = self.progress.add_task(
                        self._label(event.entry_id)[:40], total=total, completed=done, base=done
                    )
            elif name == "PartRetried":
                self.line(f"[{self._label(event.entry_id)}] retrying part "
                          f"{getattr(event.event, 'part_number', '?')}: "
                          f"{getattr(event.event, 'error', '')}")  # fmt: skip
        elif isinstance(event, mig.EntryProgress):
            task = self.tasks.get(event.entry_id)
            if task is not None and self.progress is not None:
                self.progress.update(task, completed=event.bytes_done, total=event.total_bytes)
        elif isinstance(event, mig.EntryStage) and self.mode == "plain" and (
                event.stage != "verified"):
            image = f" {event.image_id}" if event.image_id else ""
            self.line(f"[{self._label(event.entry_id)}] {event.stage}{image}")
        elif isinstance(event, mig.EntryRetrying):
            self.line(f"[{self._label(event.entry_id)}] attempt {event.attempt} failed "
                      f"({event.code}); retrying in {event.delay:.0f} s")  # fmt: skip
        elif isinstance(event, mig.EntryFinished):
            self._finished(event)
        elif isinstance(event, mig.MigrationProgress):
            self._overall(event)

    def _label(self, entry_id: str) -> str:
        return self.labels.get(entry_id, entry_id)

    def _finished(self, event: Any) -> None:
        result = event.result
        task = self.tasks.pop(event.entry_id, None)
        if task is not None and self.progress is not None:
            self.progress.remove_task(task)
        if result.status == "failed":
            detail = f"{result.error_code}: {result.error_message}"
            if result.request_id:
                detail += f" (request id {result.request_id})"
            self.line(f"[{self._label(event.entry_id)}] FAILED at {result.error_stage}: {detail}")
        else:
            size = f" {human_size(result.size)}" if result.size else ""
            took = f" in {result.duration:.1f} s" if result.duration else ""
            self.line(f"[{self._label(event.entry_id)}] {result.status} "
                      f"{result.image_id or ''}{size}{took}")  # fmt: skip

    def _overall(self, event: Any) -> None:
        if self.progress is not None:
            label = (f"overall {event.entries_done + event.entries_failed}/"
                     f"{event.entries_total}")  # fmt: skip
            if self.overall is None:
                self.overall = self.progress.add_task(label, total=event.bytes_total or None,
                                                      completed=event.bytes_done,
                                                      base=event.bytes_done)  # fmt: skip
            self.progress.update(self.overall, description=label, completed=event.bytes_done,
                                 total=event.bytes_total or None)  # fmt: skip
        elif self.mode == "plain" and time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            rate = f"{human_size(event.rate)}/s" if event.rate else "-"
            eta = f", ETA {event.eta:.0f} s" if event.eta is not None else ""
            self.line(f"overall: {human_size(event.bytes_done)} / {human_size(event.bytes_total)}"
                      f" at {rate}{eta}; {event.entries_done} done, {event.entries_failed} "
                      f"failed of {event.entries_total}; {event.images_in_flight} images, "
                      f"{event.parts_in_flight} parts in flight")  # fmt: skip


def _secs(value: Any) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _size(value: Any) -> str:
    return human_size(value) if value else "-"


def _error(row: Any) -> str | None:
    if row.get("status") != "failed":
        return None
    parts = [row.get("errorCode"), f"at {row['errorStage']}" if row.get("errorStage") else None,
             f"(request id {row['requestId']})" if row.get("requestId") else None]
    return " ".join(p for p in parts if p) or row.get("errorMessage")


REPORT_COLUMNS = (
    Column("ENTRY", "entryId", priority=0, aliases=("id", "entry")),
    Column("NAME", "name", priority=1, truncate=True),
    Column("STATUS", "status", priority=0),
    Column("IMAGE ID", "imageId", priority=1, aliases=("image",)),
    Column("SIZE", "size", show=_size, right=True, priority=2),
    Column("MD5", "md5", priority=4),
    Column("TIME", "duration", show=_secs, right=True, priority=3, aliases=("time",)),
    Column("RATE", "rate", show=human_rate_of, right=True, priority=2),
    Column("ERROR", "error", get=_error, priority=1, truncate=True),
)

PLAN_COLUMNS = (
    Column("ENTRY", "entryId", priority=0, aliases=("id", "entry")),
    Column("NAME", "name", priority=1, truncate=True),
    Column("KIND", "kind", priority=2),
    Column("SIZE", "size", show=_size, right=True, priority=2),
    Column("PARTS", "parts", right=True, priority=3),
    Column("ACTION", "action", priority=0),
    Column("NOTES", "notes", get=lambda r: "; ".join(
        [*(f"ERROR {p}" for p in r.get("problems") or ()), *(r.get("warnings") or ())]) or None,
        priority=1, truncate=True),
)


@click.command("migrate")
@click.argument("manifest_path", metavar="MANIFEST",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path),
              help="Ledger file (default: MANIFEST-STEM.ledger.sqlite next to the manifest).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report file (default: MANIFEST-STEM.report.json next to the ledger).")
@click.option("--dry-run", is_flag=True,
              help="Check the manifest, sources and ledger; print the plan; change nothing.")
@click.option("--images", type=click.IntRange(1, 1024),
              help="Images in flight [options.images, 4].")
@click.option("--parts", type=click.IntRange(1, 4096),
              help="S3 parts in flight across all images [options.parts, 16].")
@click.option("--per-image-parts", type=click.IntRange(1, 1024),
              help="Parts in flight for one image (default: --parts).")
@click.option("--bandwidth", metavar="RATE", help="Upload cap, e.g. 100M (bytes/s) [none].")
@click.option("--part-size", metavar="SIZE", help="Multipart part size, e.g. 16M [8M].")
@click.option("--attempts", type=click.IntRange(1, 100),
              help="Attempts per entry (overrides the manifest).")
@click.option("--retry-failed", is_flag=True, help="Try again the entries that failed before.")
@click.option("--shard", metavar="I/N", help="Only the entries of shard I of N (0-based).")
@click.option("--only", "only", multiple=True, metavar="ENTRY_ID",
              help="Only this entry (repeatable).")
@click.option("--owner", metavar="NAME",
              help="Worker name in the ledger (default host:pid:random).")
@click.option("--lease", type=click.FloatRange(5, None), default=60.0, show_default=True,
              help="Seconds an entry stays claimed without a heartbeat.")
@click.option("--no-wait", is_flag=True,
              help="Exit when nothing is left to claim, even if other workers still hold entries.")
@global_options
def migrate(manifest_path: Path, ledger: Path | None, report_path: Path | None, dry_run: bool,
            images: int | None, parts: int | None, per_image_parts: int | None,
            bandwidth: str | None, part_size: str | None, attempts: int | None,
            retry_failed: bool, shard: str | None, only: tuple[str, ...], owner: str | None,
            lease: float, no_wait: bool) -> None:
    """Migrate the images listed in MANIFEST (YAML or JSON) into the target
    account: local files, URLs, images of other IMS accounts, images shared
    with you.  Each entry's progress is kept in a ledger, so running the same
    command again after a crash or Ctrl-C continues where it stopped.

    Exit codes: 0 every entry verified, 1 some entry failed (see the report),
    2 invalid manifest or options, 130 interrupted.
    JSON: the report (with --dry-run: the plan).
    """
    from .. import migrate as mig

    state = get_state()
    try:
        manifest = mig.load_manifest(manifest_path)
        if attempts is not None:
            manifest = attrs.evolve(manifest, entries=[
                attrs.evolve(e, attempts=attempts) for e in manifest.entries])  # fmt: skip
        opts = dict(manifest.options)
        for key, value in (("images", images), ("parts", parts),
                           ("per_image_parts", per_image_parts)):  # fmt: skip
            if value is not None:
                opts[key] = value
        if bandwidth is not None:
            opts["bandwidth"] = mig.parse_rate(bandwidth)
        if part_size is not None:
            opts["part_size"] = mig.parse_size(part_size)
        keys = ("images", "parts", "bandwidth", "part_size", "per_image_parts")
        budget = mig.Budget(**{k: opts[k] for k in keys if opts.get(k) is not None})
    except (ValueError, ValidationError) as exc:
        message = exc.message if isinstance(exc, ValidationError) else str(exc)
        usage_error(state, f"invalid manifest or option: {message}")
    settings = state.settings()
    for account in manifest.sources.values():
        if account.token_env:
            state.output.add_secret(os.environ.get(account.token_env))
        state.output.add_secret(account.token)
    ledger_path = ledger or mig.default_ledger_path(manifest)
    report_file = report_path or ledger_path.with_name(manifest_path.stem + ".report.json")
    common: dict[str, Any] = {
        "ledger": ledger_path, "budget": budget, "tenant_id": settings.tenant_id,
        "department_id": settings.department_id,
        "resource_group_id": settings.resource_group_id, "retry_failed": retry_failed,
        "shard": _shard(shard), "only": list(only) or None,
    }  # fmt: skip
    session = _target(state, manifest)
    out: dict[str, Any] = {}

    async def main() -> None:
        async with session as ims:
            if dry_run:
                out["plan"] = await mig.plan(manifest, ims=ims, **common)
                return
            with _Display(state.progress_mode, state.output.stderr) as display:
                out["report"] = await mig.migrate(
                    manifest, ims=ims, progress=display, report=report_file, owner=owner,
                    lease=lease, wait_for_others=not no_wait, **common,
                )  # fmt: skip

    def on_interrupt() -> str:
        return (f"progress is kept in {ledger_path}; run the same command again to continue "
                f"(report: {report_file})")  # fmt: skip

    run(main, on_interrupt=on_interrupt)
    if dry_run:
        _print_plan(state, out["plan"])
        return
    report = out["report"]

    document = report.to_json()
    counts = ", ".join(f"{report.count(s)} {s}" for s in
                       ("verified", "active", "failed", "in-progress", "pending", "released")
                       if report.count(s))  # fmt: skip
    speed = rate(report.bytes_uploaded, report.duration)
    footer = [f"{len(report.entries)} entries: {counts}; {human_size(report.bytes_uploaded)} "
              f"uploaded in {report.duration:.1f} s ({human_rate_of(speed)}); at most "
              f"{report.max_images_in_flight} images and {report.max_parts_in_flight} parts "
              f"in flight; report: {report_file}"]
    if report.failed and not retry_failed:
        footer.append("failed entries are kept in the ledger; after fixing the cause run "
                      "again with --retry-failed")  # fmt: skip
    state.output.show(View(REPORT_COLUMNS, document["entries"], document=document,
                           items_key="entries", footer=footer))
    if report.failed:
        raise click.exceptions.Exit(EXIT_FAILED)


def _print_plan(state: State, plan: Any) -> None:
    document = plan.to_json()
    footer = []
    if not plan.target_ok:
        footer.append(f"ERROR target: {plan.target_error}")
    b = plan.budget
    footer.append(
        f"{len(plan.rows)} entries, {human_size(plan.upload_bytes)} to upload; budget: "
        f"{b.images} images, {b.parts} parts in flight, part size {human_size(b.part_size)}"
        + (f", {human_size(b.bandwidth)}/s" if b.bandwidth else "")
        + f"; ledger: {plan.ledger}; " + ("plan OK" if plan.ok else "PROBLEMS found"))
    state.output.show(View(PLAN_COLUMNS, document["entries"], document=document,
                           items_key="entries", footer=footer))
    if not plan.ok:
        raise click.exceptions.Exit(EXIT_FAILED)
