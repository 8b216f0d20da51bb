"""CLI configuration: flags > ``IMS_*`` environment variables > profile file.

The profile file is ``~/.config/aioims/config.toml`` (``IMS_CONFIG_FILE``
overrides the path).  Sections: ``[default]`` and one per named profile, written
``[profile.NAME]`` (valid TOML); the AWS-style ``[profile NAME]`` spelling is
accepted too.  Keys: ``endpoint``, ``region``, ``token``, ``tenant_id``,
``department_id``, ``resource_group_id``, ``ca_bundle``, ``insecure``.

A named profile inherits nothing from ``[default]``: the profile used is
``--profile`` > ``IMS_PROFILE`` > ``default``, and only that section is read.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

KEYS = (
    "endpoint",
    "region",
    "token",
    "tenant_id",
    "department_id",
    "resource_group_id",
    "ca_bundle",
    "insecure",
)

ENV_VARS: dict[str, str] = {
    "endpoint": "IMS_ENDPOINT",
    "region": "IMS_REGION",
    "token": "IMS_TOKEN",
    "tenant_id": "IMS_TENANT_ID",
    "department_id": "IMS_DEPARTMENT_ID",
    "resource_group_id": "IMS_RESOURCE_GROUP_ID",
    "ca_bundle": "IMS_CA_BUNDLE",
    "insecure": "IMS_INSECURE",
}

# The emulator's built-in users (emulator convention, see docs/CONTRACTS.md):
# token -> (tenant id, department id).  Used only when nothing else configures
# the ids, so `aioims --token token-alice upload ...` just works on the emulator.
EMULATOR_USERS: dict[str, tuple[str, str]] = {
    "token-alice": ("7000000000000000001", "7000000000000000011"),
    "token-bob": ("7000000000000000002", "7000000000000000022"),
    "token-carol": ("7000000000000000003", "7000000000000000033"),
}


class ConfigError(Exception):
    """The configuration is unusable (reported as a usage error, exit 2)."""


@attrs.define(kw_only=True)
class Settings:
    """The resolved settings of one CLI invocation."""

    endpoint: str | None = None
    region: str | None = None
    token: str | None = attrs.field(default=None, repr=False)
    tenant_id: str | None = None
    department_id: str | None = None
    resource_group_id: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    profile: str = "default"
    config_file: Path | None = None
    sources: dict[str, str] = attrs.field(factory=dict)

    def describe(self) -> dict[str, Any]:
        """A printable view; the token is never included, only whether it is set."""
        return {
            "profile": self.profile,
            "configFile": str(self.config_file) if self.config_file else None,
            "endpoint": self.endpoint,
            "region": self.region,
            "token": "***" if self.token else None,
            "tenantId": self.tenant_id,
            "departmentId": self.department_id,
            "resourceGroupId": self.resource_group_id,
            "caBundle": self.ca_bundle,
            "insecure": self.insecure,
            "sources": dict(self.sources),
        }


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("IMS_CONFIG_FILE")
    if explicit:
        return Path(explicit).expanduser()
    return Path("~/.config/aioims/config.toml").expanduser()


# --- TOML -------------------------------------------------------------------

_SECTION = re.compile(r"^\[\s*(?P<name>[^\[\]]+?)\s*\]\s*(#.*)?$")
_PAIR = re.compile(r"^(?P<key>[A-Za-z0-9_\-\"' .]+?)\s*=\s*(?P<value>.+?)\s*$")


def _parse_value(text: str, lineno: int) -> Any:
    if text[:1] in "\"'":
        quote = text[0]
        end = text.find(quote, 1)
        while quote == '"' and end > 0 and text[end - 1] == "\\":
            end = text.find(quote, end + 1)
        if end < 0:
            raise ConfigError(f"line {lineno}: unterminated string")
        rest = text[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ConfigError(f"line {lineno}: unexpected text after string")
        raw = text[1:end]
        if quote == '"':
            raw = raw.replace('\\"', '"').replace("\\\\", "\\")
        return raw
    value = text.split("#", 1)[0].strip()
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    raise ConfigError(f"line {lineno}: unsupported value {value!r}")


def parse_simple_toml(text: str) -> dict[str, Any]:
    """A tiny TOML subset: ``[section]`` / ``[a.b]`` / ``[profile NAME]`` headers
    and ``key = "string" | int | bool`` pairs, ``#`` comments.  Used on Python
    3.10 without ``tomli``, and for the AWS-style ``[profile NAME]`` header that
    strict TOML rejects."""
    root: dict[str, Any] = {}
    table = root
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        section = _SECTION.match(stripped)
        if section:
            name = section.group("name")
            parts = [p.strip().strip("\"'") for p in name.split(".")]
            table = root
            for part in parts:
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    raise ConfigError(f"line {lineno}: {name!r} is not a table")
            continue
        pair = _PAIR.match(stripped)
        if not pair:
            raise ConfigError(f"line {lineno}: cannot parse {stripped!r}")
        key = pair.group("key").strip().strip("\"'")
        table[key] = _parse_value(pair.group("value"), lineno)
    return root


def _load_toml(text: str) -> dict[str, Any]:
    loads: Any = None
    if sys.version_info >= (3, 11):
        import tomllib

        loads = tomllib.loads
    else:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli  # type: ignore[import-not-found,unused-ignore]

            loads = tomli.loads
        except ImportError:
            loads = None
    if loads is not None:
        try:
            data: dict[str, Any] = loads(text)
            return data
        except ValueError:
            pass  # e.g. "[profile dev]": fall through to the lenient parser
    return parse_simple_toml(text)


def load_profiles(path: Path) -> dict[str, dict[str, Any]]:
    """Read the profile file into ``{profile name: {key: value}}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    data = _load_toml(text)
    profiles: dict[str, dict[str, Any]] = {}
    for name, body in data.items():
        if not isinstance(body, dict):
            continue
        if name == "profile":  # [profile.NAME] tables
            for sub, sub_body in body.items():
                if isinstance(sub_body, dict):
                    profiles[str(sub)] = dict(sub_body)
        elif name.startswith("profile ") or name.startswith("profile\t"):
            profiles[name.split(None, 1)[1].strip()] = dict(body)
        else:
            profiles[name] = dict(body)
    return profiles


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def resolve(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge flags, environment and the selected profile (in that order)."""
    env = os.environ if env is None else env
    path = config_path(env)
    profile_flag = flags.get("profile")
    profile_name = profile_flag or env.get("IMS_PROFILE") or "default"
    profiles = load_profiles(path)
    explicit = bool(profile_flag or env.get("IMS_PROFILE"))
    if profile_name not in profiles and explicit and profile_name != "default":
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"profile {profile_name!r} not found in {path} (profiles: {known})")
    profile = profiles.get(profile_name, {})
    unknown = sorted(set(profile) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) in profile {profile_name!r} of {path}: {unknown}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        flag_value = flags.get(key)
        if flag_value is not None and flag_value is not False:
            values[key], sources[key] = flag_value, "flag"
        elif env.get(ENV_VARS[key]):
            values[key], sources[key] = env[ENV_VARS[key]], "env"
        elif profile.get(key) is not None and profile.get(key) != "":
            values[key], sources[key] = profile[key], f"profile:{profile_name}"
    token = values.get("token")
    if token in EMULATOR_USERS:
        tenant, department = EMULATOR_USERS[str(token)]
        if "tenant_id" not in values:
            values["tenant_id"], sources["tenant_id"] = tenant, "emulator-user"
        if "department_id" not in values:
            values["department_id"], sources["department_id"] = department, "emulator-user"
    return Settings(
        endpoint=_str_or_none(values.get("endpoint")),
        region=_str_or_none(values.get("region")),
        token=_str_or_none(values.get("token")),
        tenant_id=_str_or_none(values.get("tenant_id")),
        department_id=_str_or_none(values.get("department_id")),
        resource_group_id=_str_or_none(values.get("resource_group_id")),
        ca_bundle=_str_or_none(values.get("ca_bundle")),
        insecure=_as_bool(values.get("insecure", False)),
        profile=profile_name,
        config_file=path,
        sources=sources,
    )


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
