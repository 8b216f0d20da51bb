"""CLI configuration: a thin layer over :mod:`aioims.settings` (the one
settings module, shared with ``IMSSession.from_env`` and ``aioims.migrate``).

Precedence: flags > ``IMS_*`` environment variables > profile of the config
file (``$IMS_CONFIG_FILE``, else ``$XDG_CONFIG_HOME/aioims/config.toml``, else
``~/.config/aioims/config.toml``); see ``docs/configuration.md``.  The global
options that feed it are declared in :mod:`aioims.cli.context`; the two of
them about retries and timeouts come from :data:`OPTION_SPECS` here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import click

from ..settings import (
    EMULATOR_USERS,
    ENV_VARS,
    KEYS,
    ConfigError,
    Settings,
    config_path,
    load_profiles,
    parse_simple_toml,
)
from ..settings import resolve as _resolve

__all__ = [
    "EMULATOR_USERS",
    "ENV_VARS",
    "KEYS",
    "OPTION_SPECS",
    "ConfigError",
    "Settings",
    "config_path",
    "load_profiles",
    "parse_simple_toml",
    "resolve",
]

#: Global options of the settings that are not ids or connection details
#: (appended to the CLI's global options).
OPTION_SPECS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    # not --timeout: `images wait`, `import --wait` and `shared copy --wait`
    # have their own --timeout (the wait deadline)
    (("--request-timeout", "timeout"),
     {"type": click.FloatRange(min=0, min_open=True), "metavar": "SECONDS",
      "help": "Per-request timeout in seconds (default 60) [env IMS_TIMEOUT]."}),
    (("--max-attempts", "max_attempts"),
     {"type": click.IntRange(min=1), "metavar": "N",
      "help": "Attempts per API call, the first included (default 3) [env IMS_MAX_ATTEMPTS]."}),
]  # fmt: skip


def resolve(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Merge the global options, the environment and the selected profile."""
    return _resolve(flags, os.environ if env is None else env)
