"""The migration manifest: what to migrate, from where, with which metadata.

A YAML (needs PyYAML) or JSON document; see ``docs/migration.md`` for the
full format.  :func:`load_manifest` reads a file, :func:`parse_manifest` a
mapping; both raise :class:`ManifestError` naming the entry and the field.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import ValidationError
from ..validation import check_name
from ._fields import (
    ID_RE,
    MD5_RE,
    SOURCE_KINDS,
    ManifestError,
    check_metadata,
    keys,
    parse_options,
    source_of,
)

__all__ = [
    "SOURCE_KINDS",
    "Entry",
    "Manifest",
    "ManifestError",
    "SourceAccount",
    "load_manifest",
    "parse_manifest",
]

#: create_private_image / import_image metadata accepted in entries and defaults.
METADATA_FIELDS = (
    "description", "disk_format", "min_disk", "min_ram", "image_type", "instruction",
    "cpu_arch", "os_type", "os_version", "platform", "visibility", "usage",
    "department_id", "tenant_id", "resource_group_id", "image_tags", "boot_mode",
    "volume_images",
)  # fmt: skip
#: What create_private_image needs (import_image: the same minus image_type
#: and visibility, plus os_version; copy_shared_image: tenant/department).
REQUIRED_CREATE = (
    "disk_format", "min_disk", "min_ram", "image_type", "instruction", "cpu_arch",
    "os_type", "platform", "visibility", "usage", "department_id", "tenant_id",
)  # fmt: skip
REQUIRED_IMPORT = (
    "disk_format", "min_disk", "min_ram", "instruction", "cpu_arch", "os_type", "platform",
    "usage", "department_id", "tenant_id",
)  # fmt: skip
REQUIRED_COPY = ("department_id", "tenant_id")

_ENTRY_KEYS = {"id", "name", "md5", "verify", "retry", *SOURCE_KINDS, *METADATA_FIELDS}
_TOP_KEYS = {"version", "target", "sources", "defaults", "options", "images"}
_ACCOUNT_KEYS = {"endpoint", "region", "token", "token_env", "ca_bundle", "insecure", "timeout"}
@attrs.frozen(kw_only=True)
class SourceAccount:
    """Another IMS account/region to read images from.  The token is read
    from the environment variable ``token_env`` when the run starts (a
    literal ``token`` works but is discouraged); it is never stored."""

    name: str
    endpoint: str
    region: str
    token_env: str | None = None
    token: str | None = attrs.field(default=None, repr=False)
    ca_bundle: str | None = None
    insecure: bool = False
    timeout: float | None = None

    def resolve_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        if self.token_env:
            value = env.get(self.token_env)
            if not value:
                raise ManifestError(
                    f"environment variable {self.token_env} is not set",
                    entry=f"sources.{self.name}",
                    field="token_env",
                )
            return value
        return self.token


@attrs.frozen(kw_only=True)
class Entry:
    """One image to migrate.  ``source`` is a path (file), a URL, a mapping
    ``{"source": account, "image_id": ...}`` (ims) or a share id (shared)."""

    id: str
    index: int
    name: str | None
    kind: str
    source: Any
    metadata: dict[str, Any] = attrs.field(factory=dict, eq=False)
    md5: str | None = None
    verify: bool = True
    attempts: int = 3
    retry_delay: float = 5.0

    @property
    def label(self) -> str:
        return self.name or self.id

    def describe_source(self) -> str:
        """The source for people (a URL's query string, which may hold a
        signature, is cut off)."""
        if self.kind == "url":
            return "url:" + str(self.source).split("?", 1)[0]
        if self.kind == "ims":
            return f"ims:{self.source['source']}/{self.source['image_id']}"
        if self.kind == "shared":
            if "share_id" in self.source:
                return f"shared:{self.source['share_id']}"
            return f"shared:image={self.source['image_id']}"
        return f"{self.kind}:{self.source}"

    def fingerprint(self) -> str:
        """Hash of everything that defines the entry (to notice edits)."""
        data = {"kind": self.kind, "source": self.source, "name": self.name,
                "metadata": self.metadata, "md5": self.md5}  # fmt: skip
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@attrs.frozen(kw_only=True)
class Manifest:
    entries: list[Entry]
    sources: dict[str, SourceAccount] = attrs.field(factory=dict)
    target: dict[str, Any] = attrs.field(factory=dict)
    options: dict[str, Any] = attrs.field(factory=dict)
    path: Path | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def entry(self, entry_id: str) -> Entry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)

    def shard(self, index: int, count: int) -> list[Entry]:
        """The entries of shard ``index`` of ``count`` (by a hash of the id,
        so shards do not depend on the order of the manifest)."""
        if not 0 <= index < count:
            raise ValueError(f"shard {index}/{count}: index must be in 0..{count - 1}")
        return [e for e in self.entries if shard_of(e.id, count) == index]


def shard_of(entry_id: str, count: int) -> int:
    return int(hashlib.sha256(entry_id.encode()).hexdigest()[:12], 16) % count


# --- loading ----------------------------------------------------------------


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest file (``.json``; ``.yaml``/``.yml`` or
    anything else: YAML, which needs PyYAML — JSON is valid YAML)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {file}: {exc.strerror or exc}") from None
    data = _decode(text, file)
    return parse_manifest(data, path=file.resolve())


def _decode(text: str, file: Path) -> Any:
    if file.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"{file}: not valid JSON: {exc}") from None
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        try:
            return json.loads(text)
        except ValueError:
            raise ManifestError(
                f"{file}: YAML manifests need PyYAML (pip install pyyaml); "
                "or write the manifest as JSON"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{file}: not valid YAML: {exc}") from None


def parse_manifest(data: Any, *, path: Path | None = None) -> Manifest:
    """Validate a decoded manifest (a mapping with ``images``)."""
    if not isinstance(data, Mapping):
        raise ManifestError("the manifest must be a mapping with an 'images' list")
    top = keys(data, _TOP_KEYS, None)
    version = top.get("version", 1)
    if version != 1:
        raise ManifestError(f"unsupported version {version!r} (only 1)", field="version")
    sources = _parse_sources(top.get("sources") or {})
    target = _parse_account("target", top.get("target") or {}, partial=True)
    options = parse_options(top.get("options") or {})
    defaults_raw = top.get("defaults") or {}
    if not isinstance(defaults_raw, Mapping):
        raise ManifestError("must be a mapping of metadata fields", field="defaults")
    defaults = check_metadata(keys(defaults_raw, set(METADATA_FIELDS), "defaults"), "defaults")
    images = top.get("images")
    if not isinstance(images, list) or not images:
        raise ManifestError("must be a non-empty list of images", field="images")
    entries: list[Entry] = []
    seen_ids: dict[str, str] = {}
    seen_names: dict[str, str] = {}
    base = path.parent if path is not None else Path.cwd()
    for index, raw in enumerate(images):
        entry = _parse_entry(index, raw, defaults, sources, options, base)
        if entry.id in seen_ids:
            raise ManifestError(
                f"duplicate id (also {seen_ids[entry.id]}); give each entry its own 'id'",
                entry=f"images[{index}]",
                field="id",
            )
        seen_ids[entry.id] = f"images[{index}]"
        if entry.name is not None:
            other = seen_names.get(entry.name)
            if other is not None:
                raise ManifestError(
                    f"name {entry.name!r} is also used by {other}: target names must be "
                    "unique (after a crash the ledger finds images by name)",
                    entry=entry.id,
                    field="name",
                )
            seen_names[entry.name] = entry.id
        entries.append(entry)
    return Manifest(entries=entries, sources=sources, target=target, options=options, path=path)


def _parse_account(name: str, raw: Any, *, partial: bool) -> dict[str, Any]:
    where = name if partial else f"sources.{name}"
    if not isinstance(raw, Mapping):
        raise ManifestError("must be a mapping (endpoint, region, token_env)", entry=where)
    account = keys(raw, _ACCOUNT_KEYS, where)
    for key in ("endpoint", "region", "token", "token_env", "ca_bundle"):
        value = account.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ManifestError("must be a non-empty string", entry=where, field=key)
    if not partial:
        for key in ("endpoint", "region"):
            if key not in account:
                raise ManifestError("is required", entry=where, field=key)
    if "token" in account and "token_env" in account:
        raise ManifestError("give token_env or token, not both", entry=where, field="token")
    if "insecure" in account and not isinstance(account["insecure"], bool):
        raise ManifestError("must be true or false", entry=where, field="insecure")
    return account


def _parse_sources(raw: Any) -> dict[str, SourceAccount]:
    if not isinstance(raw, Mapping):
        raise ManifestError("must be a mapping of account name -> account", field="sources")
    out = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not ID_RE.fullmatch(name):
            raise ManifestError(f"invalid account name {name!r}", field="sources")
        account = _parse_account(name, spec, partial=False)
        out[name] = SourceAccount(name=name, **account)
    return out


def _parse_entry(index: int, raw: Any, defaults: dict[str, Any],
                 sources: Mapping[str, SourceAccount], options: Mapping[str, Any],
                 base: Path) -> Entry:  # fmt: skip
    where = f"images[{index}]"
    if not isinstance(raw, Mapping):
        raise ManifestError("must be a mapping", entry=where)
    given_id = raw.get("id")
    if isinstance(given_id, str) and ID_RE.fullmatch(given_id):
        where = given_id
    fields = keys(raw, _ENTRY_KEYS, where)
    entry_id = fields.get("id")
    if entry_id is not None:
        if not isinstance(entry_id, str) or not ID_RE.fullmatch(entry_id):
            raise ManifestError("must be 1-128 letters, digits, '.', '_', ':', '-'",
                                entry=where, field="id")  # fmt: skip
        where = entry_id
    kind, source = source_of(fields, where, sources, base)
    name = fields.get("name")
    if name is not None:
        try:
            check_name(name)
        except ValidationError as exc:
            raise ManifestError(exc.message.split(": ", 1)[-1], entry=where,
                                field="name") from None  # fmt: skip
    elif kind in ("file", "url"):
        raise ManifestError("is required for file and url sources", entry=where, field="name")
    own = check_metadata({k: v for k, v in fields.items() if k in METADATA_FIELDS}, where)
    metadata = {**defaults, **own}
    required = {"file": REQUIRED_CREATE, "url": REQUIRED_IMPORT, "shared": REQUIRED_COPY}
    for key in required.get(kind, ()):
        if key not in metadata and key not in ("tenant_id", "department_id"):
            raise ManifestError("is required (in the entry or in defaults)", entry=where,
                                field=key)  # fmt: skip
    md5 = fields.get("md5")
    if md5 is not None and (not isinstance(md5, str) or not MD5_RE.fullmatch(md5.lower())):
        raise ManifestError("must be 32 hex digits", entry=where, field="md5")
    verify = fields.get("verify", True)
    if not isinstance(verify, bool):
        raise ManifestError("must be true or false", entry=where, field="verify")
    attempts = options.get("attempts", 3)
    delay = float(options.get("retry_delay", 5.0))
    retry = fields.get("retry")
    if retry is not None:
        if not isinstance(retry, Mapping):
            raise ManifestError("must be {attempts: N, delay: SECONDS}", entry=where,
                                field="retry")  # fmt: skip
        spec = keys(retry, {"attempts", "delay"}, where)
        attempts = spec.get("attempts", attempts)
        delay = spec.get("delay", delay)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ManifestError("must be a positive integer", entry=where, field="retry.attempts")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ManifestError("must be a number >= 0", entry=where, field="retry.delay")
    if entry_id is None:
        entry_id = _default_id(kind, fields[kind], name)
    return Entry(
        id=entry_id, index=index, name=name, kind=kind, source=source, metadata=metadata,
        md5=md5.lower() if md5 else None, verify=verify, attempts=attempts,
        retry_delay=float(delay),
    )  # fmt: skip


def _default_id(kind: str, source: Any, name: str | None) -> str:
    """A stable id from what the entry *is* (source and target name), so
    re-running an edited manifest still finds entries whose metadata changed."""
    payload = json.dumps([kind, source, name], sort_keys=True).encode()
    return "e-" + hashlib.sha256(payload).hexdigest()[:16]


def entries_by_id(entries: Sequence[Entry]) -> dict[str, Entry]:
    return {e.id: e for e in entries}
