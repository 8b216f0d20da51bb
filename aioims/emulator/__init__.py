"""The IMS emulator: every endpoint of the IMS API v1 over real HTTP, with
SQLite persistence, an S3 backend (embedded moto or external), fault
injection and an admin API.  See docs/emulator.md.

Run it with ``python -m aioims.emulator --port 0`` or in-process with
:class:`Emulator`.
"""

from .faults import FaultInjector, FaultRule
from .identity import DEFAULT_USERS, User
from .server import READY_PREFIX, Emulator

__all__ = ["DEFAULT_USERS", "READY_PREFIX", "Emulator", "FaultInjector", "FaultRule", "User"]
