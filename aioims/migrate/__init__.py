"""Bulk, concurrent, resumable image migration into an IMS account.

::

    import aioims.migrate as mig

    async with IMSSession(...) as ims:
        # run to the end
        report = await mig.migrate("images.yaml", ims=ims, tenant_id=..., department_id=...)

        # or drive it (a web backend): typed events, cancellable
        async with mig.run("images.yaml", ims=ims) as events:
            async for event in events:
                if isinstance(event, mig.MigrationProgress): ...
        report = events.report

        # or only check it
        plan = await mig.plan("images.yaml", ims=ims)

The manifest (:mod:`.manifest`) lists images and their sources (local
files, URLs, images of other IMS accounts, images shared with us); the
ledger (:mod:`.ledger`, SQLite) records each entry's stage so a re-run
continues where the last one stopped; the budget (:mod:`.budget`) bounds
images and S3 parts in flight (fairly) and the bandwidth.  See
``docs/migration.md``.
"""

from ..transfer import upload_stream_resumable
from .api import default_ledger_path, migrate, run, select_entries
from .budget import Budget, FairPartLimiter, ImageLimiter, TokenBucket, parse_rate, parse_size
from .events import (
    EntryFinished,
    EntryProgress,
    EntryRetrying,
    EntryStage,
    EntryStarted,
    EntryTransfer,
    MigrationEvent,
    MigrationEvents,
    MigrationFinished,
    MigrationProgress,
    MigrationStarted,
)
from .ledger import STAGES, EntryState, LeaseLost, Ledger
from .manifest import Entry, Manifest, ManifestError, SourceAccount, load_manifest, parse_manifest
from .plan import Plan, PlanRow, plan
from .report import EntryResult, Report, write_report
from .runner import Migration
from .sources import SourceError

__all__ = [
    "STAGES",
    "Budget",
    "Entry",
    "EntryFinished",
    "EntryProgress",
    "EntryResult",
    "EntryRetrying",
    "EntryStage",
    "EntryStarted",
    "EntryState",
    "EntryTransfer",
    "FairPartLimiter",
    "ImageLimiter",
    "LeaseLost",
    "Ledger",
    "Manifest",
    "ManifestError",
    "Migration",
    "MigrationEvent",
    "MigrationEvents",
    "MigrationFinished",
    "MigrationProgress",
    "MigrationStarted",
    "Plan",
    "PlanRow",
    "Report",
    "SourceAccount",
    "SourceError",
    "TokenBucket",
    "default_ledger_path",
    "load_manifest",
    "migrate",
    "parse_manifest",
    "parse_rate",
    "parse_size",
    "plan",
    "run",
    "select_entries",
    "upload_stream_resumable",
    "write_report",
]
