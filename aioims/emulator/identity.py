"""Who is calling: the emulator's own identity convention (not the vendor's).

``Authorization: Bearer <token>`` maps to a :class:`User` (tenant id,
department id, user id, user name).  Three default users exist; more come from
a JSON users file::

    {"users": [{"token": "token-dave", "user_name": "dave",
                "user_id": "7000000000000000404", "tenant_id": "7000000000000000004",
                "department_id": "7000000000000000044"}]}

(a bare list is accepted too; camelCase keys ``userId``, ``tenantId``, ... as well).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class User:
    """One emulator user.  Users of the same tenant share its private images."""

    token: str
    user_name: str
    user_id: str
    tenant_id: str
    department_id: str
    tenant_name: str = ""
    department_name: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "token": self.token,
            "userName": self.user_name,
            "userId": self.user_id,
            "tenantId": self.tenant_id,
            "departmentId": self.department_id,
            "tenantName": self.tenant_name,
            "departmentName": self.department_name,
        }

    def __getitem__(self, key: str) -> str:
        """``user["tenantId"]``: the JSON keys of :meth:`to_json` (kept for code
        written when ``aioims.testing`` handed out users as JSON dicts)."""
        return self.to_json()[key]


def _default(name: str, digit: str) -> User:
    return User(
        token=f"token-{name}",
        user_name=name,
        user_id=f"7000000000000000{digit}0{digit}",
        tenant_id=f"700000000000000000{digit}",
        department_id=f"70000000000000000{digit}{digit}",
        tenant_name=f"tenant-{name}",
        department_name=f"dept-{name}",
    )


#: The default users (see docs/CONTRACTS.md): token-alice, token-bob, token-carol.
DEFAULT_USERS: tuple[User, ...] = (
    _default("alice", "1"),
    _default("bob", "2"),
    _default("carol", "3"),
)

_KEYS = {
    "token": "token",
    "user_name": "user_name",
    "userName": "user_name",
    "name": "user_name",
    "user_id": "user_id",
    "userId": "user_id",
    "tenant_id": "tenant_id",
    "tenantId": "tenant_id",
    "department_id": "department_id",
    "departmentId": "department_id",
    "tenant_name": "tenant_name",
    "tenantName": "tenant_name",
    "department_name": "department_name",
    "departmentName": "department_name",
}
_REQUIRED = ("token", "user_name", "user_id", "tenant_id", "department_id")


def user_from_json(raw: Mapping[str, Any]) -> User:
    """Build a user from a JSON object (snake_case or camelCase keys)."""
    values: dict[str, str] = {}
    for key, value in raw.items():
        attr = _KEYS.get(key)
        if attr is None:
            raise ValueError(f"unknown user field {key!r}")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValueError(f"user field {key!r} must be a string")
        values[attr] = str(value)
    missing = [name for name in _REQUIRED if not values.get(name)]
    if missing:
        raise ValueError(f"user is missing {', '.join(missing)}")
    return User(**values)


def load_users_file(path: str | Path) -> list[User]:
    """Read a users file (``{"users": [...]}`` or a bare list)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, Mapping):
        data = data.get("users", [])
    if not isinstance(data, list):
        raise ValueError("users file must hold a list of users or {'users': [...]}")
    return [user_from_json(item) for item in data]


class Directory:
    """Token and user-id lookups over the known users (kept in memory; the
    store persists them)."""

    def __init__(self, users: Iterable[User] = ()) -> None:
        self._by_token: dict[str, User] = {}
        self._by_id: dict[str, User] = {}
        for user in users:
            self.add(user)

    def add(self, user: User) -> None:
        """Add or replace a user (the token is the key)."""
        old = self._by_token.get(user.token)
        if old is not None:
            self._by_id.pop(old.user_id, None)
        clash = self._by_id.get(user.user_id)
        if clash is not None and clash.token != user.token:
            raise ValueError(f"user id {user.user_id} already belongs to {clash.user_name}")
        self._by_token[user.token] = user
        self._by_id[user.user_id] = user

    def replace(self, users: Iterable[User]) -> None:
        """Forget every user, then add these."""
        self._by_token.clear()
        self._by_id.clear()
        for user in users:
            self.add(user)

    def by_token(self, token: str) -> User | None:
        return self._by_token.get(token)

    def by_id(self, user_id: str) -> User | None:
        return self._by_id.get(user_id)

    def by_name(self, name: str) -> User | None:
        for user in self._by_token.values():
            if user.user_name == name:
                return user
        return None

    def tenant_name(self, tenant_id: str) -> str:
        for user in self._by_token.values():
            if user.tenant_id == tenant_id:
                return user.tenant_name
        return ""

    def all(self) -> list[User]:
        return list(self._by_token.values())

    def __len__(self) -> int:
        return len(self._by_token)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
