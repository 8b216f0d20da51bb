"""``--dry-run``: validate the manifest, look at every source and the
ledger, check what can be checked before anything is created, and say what
a run would do.  Nothing is written (the ledger is only read, if it exists).

Checks: the target answers with these credentials; every source exists
(files: ``stat``; URLs: ``HEAD``; IMS images: ``get_image`` in the source
account, must be ``active``; shares: listed for the target account); sizes;
``min_disk`` holds the image (the service refuses the upload otherwise); the
S3 limits (10,000 parts, 5 TiB); target names already taken.  IMS has no
quota API, so quotas themselves cannot be checked in advance.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ..errors import IMSError, ValidationError
from ..pagination import Filter
from ..transfer import TransferConfig
from ..transfer.config import GiB, plan_parts
from .api import (
    budget_from,
    check_tenancy,
    default_ledger_path,
    select_entries,
    source_sessions,
)
from .budget import Budget
from .ledger import EntryState, Ledger
from .manifest import Entry, Manifest, ManifestError, load_manifest
from .sources import SourceInfo, inspect_file, inspect_ims, inspect_shared, inspect_url

if TYPE_CHECKING:
    from ..session import IMSSession

__all__ = ["Plan", "PlanRow", "plan"]

_INSPECTORS = 8


@attrs.define(kw_only=True)
class PlanRow:
    entry_id: str
    name: str | None
    kind: str
    source: str
    size: int | None = None
    parts: int | None = None
    stage: str = "pending"
    image_id: str | None = None
    #: migrate | resume from STAGE | skip (verified) | skip (failed) | retry from STAGE
    action: str = "migrate"
    problems: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "entryId": self.entry_id, "name": self.name, "kind": self.kind,
            "source": self.source, "size": self.size, "parts": self.parts,
            "stage": self.stage, "imageId": self.image_id, "action": self.action,
            "problems": self.problems, "warnings": self.warnings,
        }  # fmt: skip


@attrs.frozen(kw_only=True)
class Plan:
    rows: list[PlanRow]
    budget: Budget
    ledger: Path
    target_ok: bool
    target_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.target_ok and not any(r.problems for r in self.rows)

    @property
    def upload_bytes(self) -> int:
        """Bytes this process would upload (file and IMS entries still to do)."""
        return sum(r.size or 0 for r in self.rows
                   if r.kind in ("file", "ims") and not r.action.startswith("skip"))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "ledger": str(self.ledger), "targetOk": self.target_ok,
            "targetError": self.target_error, "uploadBytes": self.upload_bytes,
            "budget": attrs.asdict(self.budget), "entries": [r.to_json() for r in self.rows],
        }  # fmt: skip


async def _ledger_states(path: Path) -> dict[str, EntryState]:
    if not await anyio.Path(path).exists():
        return {}
    async with Ledger(path) as ledger:
        return {s.entry_id: s for s in await ledger.all()}


def _action(state: EntryState | None, retry_failed: bool) -> str:
    if state is None or state.stage == "pending":
        return "migrate"
    if state.stage == "verified":
        return "skip (verified)"
    if state.stage == "failed":
        if retry_failed:
            return f"retry from {state.resume_stage or 'pending'}"
        return "skip (failed; --retry-failed retries it)"
    return f"resume from {state.stage}"


async def plan(
    manifest: Manifest | str | os.PathLike[str],
    *,
    ims: IMSSession,
    ledger: str | os.PathLike[str] | None = None,
    budget: Budget | None = None,
    sources: Mapping[str, IMSSession] | None = None,
    tenant_id: str | None = None,
    department_id: str | None = None,
    resource_group_id: str | None = None,
    retry_failed: bool = False,
    shard: tuple[int, int] | None = None,
    only: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """Check a migration without running it (see the module docstring).
    Raises :class:`ManifestError` for an invalid manifest or a missing
    source token; problems with single entries are reported in the rows."""
    if not isinstance(manifest, Manifest):
        manifest = await anyio.to_thread.run_sync(load_manifest, manifest)
    entries = select_entries(manifest, shard=shard, only=only)
    defaults = {"tenant_id": tenant_id, "department_id": department_id,
                "resource_group_id": resource_group_id}  # fmt: skip
    tenancy_problem = None
    try:
        check_tenancy(entries, defaults)
    except ManifestError as exc:
        tenancy_problem = exc
    the_budget = budget_from(manifest, budget)
    ledger_path = Path(ledger) if ledger is not None else default_ledger_path(manifest)
    states = await _ledger_states(ledger_path)
    config = TransferConfig(part_size=the_budget.part_size,
                            multipart_threshold=min(the_budget.part_size, 5 << 30))  # fmt: skip
    target_ok, target_error = True, None
    try:
        await ims.list_private_images(current=1, size=1)
    except IMSError as exc:
        target_ok, target_error = False, str(exc)
    rows: list[PlanRow] = []
    async with AsyncExitStack() as stack:
        sessions = source_sessions(manifest, entries, sources, environ)
        for session in sessions.values():
            await stack.enter_async_context(session)
        limiter = anyio.CapacityLimiter(_INSPECTORS)

        async def check(entry: Entry, row: PlanRow) -> None:
            async with limiter:
                await _check_entry(entry, row, ims, sessions, config, defaults, target_ok)

        async with anyio.create_task_group() as tg:
            for entry in entries:
                state = states.get(entry.id)
                row = PlanRow(
                    entry_id=entry.id, name=entry.name, kind=entry.kind,
                    source=entry.describe_source(), stage=state.stage if state else "pending",
                    image_id=state.image_id if state else None,
                    action=_action(state, retry_failed), size=state.size if state else None,
                )  # fmt: skip
                if tenancy_problem is not None and tenancy_problem.entry == entry.id:
                    row.problems.append(str(tenancy_problem))
                rows.append(row)
                if not row.action.startswith("skip"):
                    tg.start_soon(check, entry, row)
    _duplicate_names(rows, states)
    return Plan(rows=rows, budget=the_budget, ledger=ledger_path, target_ok=target_ok,
                target_error=target_error)  # fmt: skip


async def _check_entry(entry: Entry, row: PlanRow, ims: IMSSession,
                       sessions: Mapping[str, IMSSession], config: TransferConfig,
                       defaults: Mapping[str, Any], target_ok: bool) -> None:  # fmt: skip
    info: SourceInfo | None = None
    try:
        if entry.kind == "file":
            info = await inspect_file(entry)
        elif entry.kind == "url":
            info = await inspect_url(ims.http_session, entry)
        elif entry.kind == "ims":
            info = await inspect_ims(sessions[entry.source["source"]], entry)
        else:
            info = await inspect_shared(ims, entry)
    except IMSError as exc:
        row.problems.append(f"source: {exc}")
    if info is not None and info.size:
        row.size = info.size
        try:
            row.parts = plan_parts(info.size, config).part_count
        except ValidationError as exc:
            row.problems.append(exc.message)
        metadata = {**(info.metadata if info else {}), **entry.metadata}
        min_disk = metadata.get("min_disk")
        if isinstance(min_disk, int) and min_disk * GiB < info.size:
            message = (f"min_disk {min_disk} GiB is smaller than the image "
                       f"({info.size / GiB:.2f} GiB): the service will refuse it")  # fmt: skip
            (row.problems if entry.kind in ("file", "ims") else row.warnings).append(message)
    elif info is not None and entry.kind == "url":
        row.warnings.append("the server did not tell the size (HEAD)")
    if entry.kind == "url" and entry.md5 is None and entry.verify:
        row.warnings.append("no md5 given: the URL will be downloaded again to verify it")
    name = entry.name or (info.name if info else None)
    row.name = name
    if target_ok and name and row.image_id is None:
        try:
            page = await ims.list_private_images(current=1, size=1,
                                                 filter=Filter().name_equals(name))  # fmt: skip
            if page.total:
                row.warnings.append(f"the target already has {page.total} image(s) named "
                                    f"{name!r}; a new one will be created")  # fmt: skip
        except IMSError as exc:
            row.warnings.append(f"could not list target images: {exc}")


def _duplicate_names(rows: Sequence[PlanRow], states: Mapping[str, EntryState]) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        if not row.name:
            continue
        other = seen.get(row.name)
        if other is not None:
            row.problems.append(f"target name {row.name!r} is also the name of {other}")
        seen[row.name] = row.entry_id
