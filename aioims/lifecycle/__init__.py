"""The image lifecycle: one coordinator (create → prepare → multipart →
done → wait → verify) and the journals it records each step's intent in.

* :class:`Coordinator` — used by :class:`aioims.Uploader` (and so
  ``IMSSession.upload_image`` and ``aioims upload``) and by
  :mod:`aioims.migrate`;
* :class:`Journal` — the interface; :class:`FileJournal` keeps it in one
  JSON file, the migration ledger in its SQLite file;
* :mod:`aioims.hooks` — the named crash points the coordinator and the
  driver pass.
"""

from .coordinator import Coordinator, SourceSpec
from .journal import STAGES, FileJournal, Journal, JournalKey, UploadRecord, fingerprint

__all__ = [
    "STAGES",
    "Coordinator",
    "FileJournal",
    "Journal",
    "JournalKey",
    "SourceSpec",
    "UploadRecord",
    "fingerprint",
]
