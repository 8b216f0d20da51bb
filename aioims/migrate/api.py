"""Running a migration: claim entries from the ledger, run each through its
stages under the transfer budget, retry, report.

::

    async with aioims.migrate.run("images.yaml", ims=ims) as events:
        async for event in events:
            ...                              # typed events (aioims.migrate.events)
    report = events.report

    report = await aioims.migrate.migrate("images.yaml", ims=ims, progress=print)

The migration runs while the ``async with`` block runs: leaving the block
(once the events ended, or early — ``break``, an exception, cancellation)
stops it.  Stopped entries keep their stage, image and multipart upload in
the ledger; the next run continues them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..auth import HeaderAuth
from ..config import DEFAULT_TIMEOUT
from ..transfer import TransferConfig
from .budget import Budget
from .events import MigrationEvent, MigrationEvents
from .ledger import Ledger
from .manifest import Entry, Manifest, ManifestError, load_manifest
from .report import Report
from .runner import Migration

if TYPE_CHECKING:
    from ..session import IMSSession

__all__ = ["default_ledger_path", "migrate", "run", "select_entries"]


def default_ledger_path(manifest: Manifest) -> Path:
    """``<manifest dir>/<manifest stem>.ledger.sqlite``."""
    if manifest.path is None:
        return Path.cwd() / "migration.ledger.sqlite"
    return manifest.path.with_name(manifest.path.stem + ".ledger.sqlite")


def select_entries(manifest: Manifest, *, shard: tuple[int, int] | None = None,
                   only: Iterable[str] | None = None) -> list[Entry]:  # fmt: skip
    """The entries of one shard and/or of the given ids (all by default)."""
    entries = manifest.shard(*shard) if shard is not None else list(manifest.entries)
    if only is not None:
        wanted = list(only)
        known = {e.id for e in manifest.entries}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise ManifestError(f"no entry with id {', '.join(missing)}", field="only")
        entries = [e for e in entries if e.id in set(wanted)]
    return entries


def budget_from(manifest: Manifest, budget: Budget | None) -> Budget:
    if budget is not None:
        return budget
    keys = ("images", "parts", "bandwidth", "part_size", "per_image_parts")
    return Budget(**{k: manifest.options[k] for k in keys if k in manifest.options})


def tenancy_defaults(
    ims: IMSSession | None,
    environ: Mapping[str, str] | None,
    **given: str | None,
) -> dict[str, str | None]:
    """The metadata defaults of a run: the ``given`` arguments > the target
    session's :attr:`~aioims.IMSSession.defaults` > the configuration
    (``IMS_TENANT_ID``/``IMS_DEPARTMENT_ID``/``IMS_RESOURCE_GROUP_ID`` or
    the profile, see :mod:`aioims.settings`)."""
    from ..settings import load_defaults

    out = dict(given)
    session_defaults = getattr(ims, "defaults", None)
    layers: list[Any] = [session_defaults] if session_defaults is not None else []
    if not all(out.get(key) for key in ("tenant_id", "department_id")):
        layers.append(load_defaults(environ))
    for layer in layers:
        for key in ("tenant_id", "department_id", "resource_group_id"):
            if out.get(key) is None:
                out[key] = getattr(layer, key, None)
    return out


def check_tenancy(entries: Sequence[Entry], defaults: Mapping[str, Any]) -> None:
    for entry in entries:
        for key in ("tenant_id", "department_id"):
            if not entry.metadata.get(key) and not defaults.get(key):
                raise ManifestError(
                    "is required: give it in the entry, in defaults, or to the run "
                    "(--tenant-id/--department-id, IMS_TENANT_ID/IMS_DEPARTMENT_ID)",
                    entry=entry.id, field=key,
                )


def source_sessions(manifest: Manifest, entries: Sequence[Entry],
                    given: Mapping[str, IMSSession] | None,
                    environ: Mapping[str, str] | None) -> dict[str, IMSSession]:  # fmt: skip
    """Sessions for the source accounts the entries use (tokens from the
    environment; ``given`` sessions win)."""
    from ..session import IMSSession

    out: dict[str, IMSSession] = dict(given or {})
    for entry in entries:
        if entry.kind != "ims":
            continue
        name = entry.source["source"]
        if name in out:
            continue
        account = manifest.sources[name]
        token = account.resolve_token(environ)
        out[name] = IMSSession(
            account.endpoint, account.region,
            auth=HeaderAuth.bearer(token) if token else None,
            verify_ssl=not account.insecure, ca_bundle=account.ca_bundle,
            timeout=account.timeout or DEFAULT_TIMEOUT,
        )  # fmt: skip
    return out


@asynccontextmanager
async def run(
    manifest: Manifest | str | os.PathLike[str],
    *,
    ims: IMSSession,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    budget: Budget | None = None,
    sources: Mapping[str, IMSSession] | None = None,
    tenant_id: str | None = None,
    department_id: str | None = None,
    resource_group_id: str | None = None,
    retry_failed: bool = False,
    shard: tuple[int, int] | None = None,
    only: Iterable[str] | None = None,
    report: str | os.PathLike[str] | None = None,
    wait_for_others: bool = True,
    lease: float = 60.0,
    owner: str | None = None,
    transfer_config: TransferConfig | None = None,
    wait_timeout: float | None = None,
    poll_interval: float | None = None,
    progress_interval: float = 0.5,
    environ: Mapping[str, str] | None = None,
) -> AsyncIterator[MigrationEvents]:
    """Run a migration; yields its :class:`MigrationEvents` (see the module
    docstring).  ``manifest``: a :class:`Manifest` or a file; ``ims``: an
    open session on the target account; ``ledger``: a :class:`Ledger` or
    its path (default: next to the manifest); ``budget``: the limits
    (default: the manifest's ``options``); ``sources``: sessions for source
    accounts (default: built from the manifest, tokens from the
    environment); ``tenant_id``/``department_id``/``resource_group_id``:
    metadata defaults (else the session's :attr:`~aioims.IMSSession.defaults`,
    else ``IMS_TENANT_ID``/... or the profile); ``retry_failed``: try failed entries again;
    ``shard=(i, n)``/``only``: a subset of the entries; ``report``: write
    the JSON report there; ``wait_for_others``: when nothing is left to
    claim, wait for entries other workers hold (a dead worker's are taken
    over once their lease expires)."""
    if not isinstance(manifest, Manifest):
        manifest = await anyio.to_thread.run_sync(load_manifest, manifest)
    entries = select_entries(manifest, shard=shard, only=only)
    defaults = tenancy_defaults(ims, environ, tenant_id=tenant_id, department_id=department_id,
                                resource_group_id=resource_group_id)  # fmt: skip
    check_tenancy(entries, defaults)
    options = manifest.options
    events = MigrationEvents()
    error: list[BaseException] = []
    async with AsyncExitStack() as stack:
        if isinstance(ledger, Ledger):
            the_ledger = ledger
            await the_ledger.open()
        else:
            path = Path(ledger) if ledger is not None else default_ledger_path(manifest)
            the_ledger = Ledger(path, owner=owner, lease=lease)
            await stack.enter_async_context(the_ledger)
        sessions = source_sessions(manifest, entries, sources, environ)
        for session in sessions.values():
            await stack.enter_async_context(session)
        migration = Migration(
            manifest, entries, ims=ims, ledger=the_ledger, budget=budget_from(manifest, budget),
            sources=sessions, events=events, defaults=defaults, retry_failed=retry_failed,
            wait_for_others=wait_for_others, transfer_config=transfer_config,
            wait_timeout=wait_timeout or float(options.get("wait_timeout", 3600.0)),
            poll_interval=poll_interval or float(options.get("poll_interval", 1.0)),
            progress_interval=progress_interval, report_path=report,
        )  # fmt: skip

        scope = anyio.CancelScope()  # events.cancel() stops the migration, not the consumer
        events._stopper = scope.cancel

        async def main() -> None:
            try:
                with scope:
                    events.report = await migration.execute()
            except Exception as exc:
                error.append(exc)
            finally:
                if events.report is None:
                    events.report = migration.report
                events.close()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(main)
                try:
                    yield events
                finally:
                    tg.cancel_scope.cancel()
        except BaseException as exc:
            inner = _unwrap(exc)
            if inner is exc:
                raise
            raise inner from inner.__cause__
    if error:
        raise error[0]


def _unwrap(exc: BaseException) -> BaseException:
    while True:
        inner = getattr(exc, "exceptions", None)
        if not isinstance(inner, tuple) or len(inner) != 1:
            return exc
        exc = inner[0]


async def migrate(
    manifest: Manifest | str | os.PathLike[str],
    *,
    ims: IMSSession,
    progress: Callable[[MigrationEvent], Any] | None = None,
    **options: Any,
) -> Report:
    """Run a migration to the end and return its :class:`Report`;
    ``progress`` receives every event (sync function, or ``async def``).
    Other options: those of :func:`run`.  Cancel the calling task to stop."""
    async with run(manifest, ims=ims, **options) as events:
        async for event in events:
            if progress is not None:
                result = progress(event)
                if hasattr(result, "__await__"):
                    await result
    assert events.report is not None
    return events.report

