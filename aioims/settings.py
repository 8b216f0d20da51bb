"""The one place aioims reads its configuration from: flags (or keyword
arguments) > ``IMS_*`` environment variables > a profile of the config file.

Used by :meth:`aioims.IMSSession.from_env`, the ``aioims`` CLI (its global
options are the "flags") and :mod:`aioims.migrate` (tenant defaults).

The config file is ``$IMS_CONFIG_FILE``, else
``$XDG_CONFIG_HOME/aioims/config.toml``, else ``~/.config/aioims/config.toml``.
Its sections are ``[default]`` and one per named profile, written
``[profile.NAME]`` (valid TOML; the AWS-style ``[profile NAME]`` is accepted
too).  The profile used is the ``profile`` flag/argument > ``IMS_PROFILE`` >
``default``; only that section is read (a named profile inherits nothing from
``[default]``).  Keys are the names of :data:`KEYS`; each has one environment
variable (:data:`ENV_VARS`).  Deprecated names still work and emit a
:class:`DeprecationWarning` (:data:`DEPRECATED_ENV_VARS`).

``docs/configuration.md`` is the user-facing description of all this.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .config import DEFAULT_TIMEOUT, RetryPolicy
from .errors import ValidationError
from .models.spec import TenantDefaults

__all__ = [
    "DEPRECATED_ENV_VARS",
    "EMULATOR_USERS",
    "ENV_VARS",
    "KEYS",
    "ConfigError",
    "Settings",
    "config_path",
    "load_profiles",
    "parse_simple_toml",
    "resolve",
]

#: Every setting, with its environment variable and a description.
ENV_VARS: dict[str, str] = {
    "endpoint": "IMS_ENDPOINT",
    "region": "IMS_REGION",
    "token": "IMS_TOKEN",
    "tenant_id": "IMS_TENANT_ID",
    "department_id": "IMS_DEPARTMENT_ID",
    "resource_group_id": "IMS_RESOURCE_GROUP_ID",
    "ca_bundle": "IMS_CA_BUNDLE",
    "insecure": "IMS_INSECURE",
    "timeout": "IMS_TIMEOUT",
    "max_attempts": "IMS_MAX_ATTEMPTS",
    "retry_deadline": "IMS_RETRY_DEADLINE",
    "backoff_initial": "IMS_BACKOFF_INITIAL",
    "backoff_max": "IMS_BACKOFF_MAX",
}

#: The keys a profile may hold (same names as the flags/keyword arguments).
KEYS: tuple[str, ...] = tuple(ENV_VARS)

DESCRIPTIONS: dict[str, str] = {
    "endpoint": "service root URL, e.g. https://ims.example.com (required)",
    "region": "region id sent as x-regionid, e.g. region0 (required)",
    "token": "bearer token; sent as 'Authorization: Bearer <token>'",
    "tenant_id": "default tenant id of created/imported/copied images and migrations",
    "department_id": "default department id (same uses)",
    "resource_group_id": "default resource group id (same uses)",
    "ca_bundle": "path to a PEM CA bundle used to verify the server",
    "insecure": "'true' turns TLS certificate checks off (default false)",
    "timeout": "per-request timeout in seconds (default 60)",
    "max_attempts": "attempts per call including the first (default 3)",
    "retry_deadline": "total seconds a call may take, retries included",
    "backoff_initial": "first backoff cap in seconds (default 0.2)",
    "backoff_max": "largest backoff in seconds (default 10)",
}

#: Old variable names still read: old name -> (new name, value converter).
DEPRECATED_ENV_VARS: dict[str, tuple[str, str]] = {
    "IMS_VERIFY_SSL": ("IMS_INSECURE", "inverted: IMS_VERIFY_SSL=false is IMS_INSECURE=true"),
}

#: Variables that select the profile and file (not settings themselves).
IMS_PROFILE = "IMS_PROFILE"
IMS_CONFIG_FILE = "IMS_CONFIG_FILE"

# The emulator's built-in users (emulator convention, see docs/CONTRACTS.md):
# token -> (tenant id, department id).  Used only when nothing else configures
# the ids, so `IMS_TOKEN=token-alice` just works on the emulator.
EMULATOR_USERS: dict[str, tuple[str, str]] = {
    "token-alice": ("7000000000000000001", "7000000000000000011"),
    "token-bob": ("7000000000000000002", "7000000000000000022"),
    "token-carol": ("7000000000000000003", "7000000000000000033"),
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValidationError):
    """The configuration is unusable: a bad value, an unknown profile or key,
    an unreadable file.  ``field`` names the variable or key at fault.  (The
    CLI reports it as a usage error, exit 2.)"""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)

    def __str__(self) -> str:
        return self.message


# --- values -------------------------------------------------------------------------


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where} must be true/false, got {value!r}", field=where)


def _as_float(value: Any, where: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number, got {value!r}", field=where)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number, got {value!r}", field=where) from None
    if number != number or number < 0 or (number == 0 and not allow_zero):
        raise ConfigError(f"{where} must be > 0, got {value!r}", field=where)
    return number


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be an integer, got {value!r}", field=where)
    try:
        number = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be an integer, got {value!r}", field=where) from None
    if isinstance(value, float) and value != number:
        raise ConfigError(f"{where} must be an integer, got {value!r}", field=where)
    if number < 1:
        raise ConfigError(f"{where} must be >= 1, got {value!r}", field=where)
    return number


def _as_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{where} must be a string, got {value!r}", field=where)
    text = str(value).strip()
    return text or None


def _as_backoff(value: Any, where: str) -> float:
    return _as_float(value, where, allow_zero=True)


_CONVERT: dict[str, Callable[[Any, str], Any]] = {
    "insecure": _as_bool,
    "timeout": _as_float,
    "max_attempts": _as_int,
    "retry_deadline": _as_float,
    "backoff_initial": _as_backoff,
    "backoff_max": _as_backoff,
}


def _convert(key: str, value: Any, where: str) -> Any:
    convert = _CONVERT.get(key)
    return _as_str(value, where) if convert is None else convert(value, where)


# --- the resolved settings ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Settings:
    """Resolved configuration (every value already checked).

    ``sources`` says where each value came from: ``"flag"``, ``"env"``,
    ``"env:IMS_VERIFY_SSL"`` (a deprecated name), ``"profile:NAME"`` or
    ``"emulator-user"``.
    """

    endpoint: str | None = None
    region: str | None = None
    token: str | None = attrs.field(default=None, repr=False)
    tenant_id: str | None = None
    department_id: str | None = None
    resource_group_id: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT
    max_attempts: int | None = None
    retry_deadline: float | None = None
    backoff_initial: float | None = None
    backoff_max: float | None = None
    profile: str = "default"
    config_file: Path | None = None
    sources: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def verify_ssl(self) -> bool:
        return not self.insecure

    @property
    def defaults(self) -> TenantDefaults:
        """The tenant/department/resource-group defaults."""
        return TenantDefaults(
            tenant_id=self.tenant_id,
            department_id=self.department_id,
            resource_group_id=self.resource_group_id,
        )

    def retry_policy(self) -> RetryPolicy:
        """The :class:`RetryPolicy` these settings describe (defaults elsewhere)."""
        kwargs: dict[str, Any] = {}
        if self.max_attempts is not None:
            kwargs["max_attempts"] = self.max_attempts
        if self.retry_deadline is not None:
            kwargs["deadline"] = self.retry_deadline
        if self.backoff_initial is not None:
            kwargs["initial_backoff"] = self.backoff_initial
        if self.backoff_max is not None:
            kwargs["max_backoff"] = self.backoff_max
        return RetryPolicy(**kwargs)

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigError` naming the first of ``names`` not set."""
        for name in names:
            if getattr(self, name) in (None, ""):
                raise ConfigError(
                    f"no {name.replace('_', ' ')} configured: set {ENV_VARS[name]}, pass "
                    f"{name}=..., or set {name} in profile [{self.profile}] of "
                    f"{self.config_file}",
                    field=ENV_VARS[name],
                )

    def session_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`aioims.IMSSession` (``auth`` excluded:
        the token is :attr:`token`)."""
        self.require("endpoint", "region")
        return {
            "endpoint": self.endpoint,
            "region": self.region,
            "timeout": self.timeout,
            "retry": self.retry_policy(),
            "verify_ssl": not self.insecure,
            "ca_bundle": None if self.insecure else self.ca_bundle,
            "defaults": self.defaults,
        }

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
            "timeout": self.timeout,
            "maxAttempts": self.retry_policy().max_attempts,
            "sources": dict(self.sources),
        }


# --- the file ---------------------------------------------------------------------------


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$IMS_CONFIG_FILE`` > ``$XDG_CONFIG_HOME/aioims/config.toml`` >
    ``~/.config/aioims/config.toml`` (``~`` is ``$HOME`` of ``env``)."""
    env = os.environ if env is None else env
    explicit = env.get(IMS_CONFIG_FILE)
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "aioims" / "config.toml"
    home = env.get("HOME")
    base = Path(home) if home else Path("~").expanduser()
    return base / ".config" / "aioims" / "config.toml"


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
    if re.fullmatch(r"[+-]?\d+\.\d+", value):
        return float(value)
    raise ConfigError(f"line {lineno}: unsupported value {value!r}")


def parse_simple_toml(text: str) -> dict[str, Any]:
    """A tiny TOML subset: ``[section]`` / ``[a.b]`` / ``[profile NAME]`` headers
    and ``key = "string" | int | float | bool`` pairs, ``#`` comments.  Used on
    Python 3.10 without ``tomli``, and for the AWS-style ``[profile NAME]``
    header that strict TOML rejects."""
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


def _toml_loads() -> Callable[[str], dict[str, Any]] | None:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads
    try:  # pragma: no cover - Python 3.10 only
        import tomli  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover
        return None
    loads: Callable[[str], dict[str, Any]] = tomli.loads  # pragma: no cover
    return loads  # pragma: no cover


def _load_toml(text: str) -> dict[str, Any]:
    loads = _toml_loads()
    if loads is not None:
        try:
            return loads(text)
        except ValueError:
            pass  # e.g. "[profile dev]": fall through to the lenient parser
    return parse_simple_toml(text)


def load_profiles(path: Path) -> dict[str, dict[str, Any]]:
    """Read the config file into ``{profile name: {key: value}}`` (``{}``
    when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = _load_toml(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
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


# --- resolving ----------------------------------------------------------------------------


def _deprecated_env(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """Settings given by deprecated variable names: key -> (value, source)."""
    out: dict[str, tuple[Any, str]] = {}
    raw = env.get("IMS_VERIFY_SSL")
    if raw:
        warnings.warn(
            "IMS_VERIFY_SSL is deprecated: use IMS_INSECURE=true instead of IMS_VERIFY_SSL=false",
            DeprecationWarning,
            stacklevel=4,
        )
        out["insecure"] = (not _as_bool(raw, "IMS_VERIFY_SSL"), "env:IMS_VERIFY_SSL")
    return out


def resolve(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    profile: str | None = None,
) -> Settings:
    """Merge ``flags`` (keyword values; ``None``/``False`` mean "not given"),
    the environment ``env`` (default ``os.environ``; empty variables count as
    unset) and the selected profile of the config file, in that order.

    ``profile`` (or ``flags["profile"]``) selects the profile; an explicitly
    selected profile that the file lacks is an error, as is an unknown key in
    the profile.  Bad values raise :class:`ConfigError` naming the variable,
    flag or key.  Nothing is required here: see :meth:`Settings.require`.
    """
    env = os.environ if env is None else env
    flags = dict(flags or {})
    path = config_path(env)
    profile_flag = profile or flags.pop("profile", None)
    profile_name = profile_flag or env.get(IMS_PROFILE) or "default"
    profiles = load_profiles(path)
    explicit = bool(profile_flag or env.get(IMS_PROFILE))
    if profile_name not in profiles and explicit and profile_name != "default":
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"profile {profile_name!r} not found in {path} (profiles: {known})", field="profile"
        )
    section = profiles.get(profile_name, {})
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in profile {profile_name!r} of {path}: {unknown} "
            f"(known: {', '.join(KEYS)})",
            field=unknown[0],
        )
    unknown_flags = sorted(set(flags) - set(KEYS))
    if unknown_flags:
        raise ConfigError(f"unknown setting(s): {unknown_flags}", field=unknown_flags[0])

    deprecated = _deprecated_env(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    where_profile = f"profile:{profile_name}"
    for key in KEYS:
        flag_value = flags.get(key)
        variable = ENV_VARS[key]
        if flag_value is not None and flag_value is not False:
            values[key], sources[key] = _convert(key, flag_value, key), "flag"
        elif env.get(variable):
            values[key], sources[key] = _convert(key, env[variable], variable), "env"
        elif key in deprecated:
            values[key], sources[key] = deprecated[key]
        elif section.get(key) is not None and section.get(key) != "":
            where = f"{key} (profile {profile_name!r} of {path})"
            values[key], sources[key] = _convert(key, section[key], where), where_profile
    token = values.get("token")
    if token in EMULATOR_USERS:
        tenant, department = EMULATOR_USERS[str(token)]
        if "tenant_id" not in values:
            values["tenant_id"], sources["tenant_id"] = tenant, "emulator-user"
        if "department_id" not in values:
            values["department_id"], sources["department_id"] = department, "emulator-user"
    if values.get("insecure") and values.get("ca_bundle"):
        values.pop("ca_bundle")  # no verification: a CA bundle is moot
    values.setdefault("insecure", False)
    values.setdefault("timeout", DEFAULT_TIMEOUT)
    settings = Settings(**values, profile=profile_name, config_file=path, sources=sources)
    try:
        settings.retry_policy()
    except ValidationError as exc:
        raise ConfigError(exc.message, field=exc.field) from None
    return settings


def load_defaults(env: Mapping[str, str] | None = None) -> TenantDefaults:
    """The tenant defaults of the environment and the selected profile (no flags)."""
    return resolve({}, env).defaults
