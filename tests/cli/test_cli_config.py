"""Configuration: flags > IMS_* environment > profile file; TOML parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from aioims.cli import config
from aioims.cli.config import ConfigError, load_profiles, parse_simple_toml, resolve

PROFILE_FILE = """
# aioims profiles
[default]
endpoint = "https://ims.example.com"
region = "region0"
token = "profile-secret"
tenant_id = "t-default"
department_id = "d-default"

[profile.dev]
endpoint = "http://127.0.0.1:8080"
region = "dev-region"
insecure = true
"""

AWS_STYLE = """
[default]
region = "r-default"

[profile staging]
endpoint = "https://staging.example.com"   # trailing comment
region = 'staging'
resource_group_id = "rg-1"
"""


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(PROFILE_FILE)
    return path


def test_profile_file_default_section(cfg_file: Path) -> None:
    s = resolve({}, {"IMS_CONFIG_FILE": str(cfg_file)})
    assert s.endpoint == "https://ims.example.com"
    assert s.region == "region0"
    assert s.token == "profile-secret"
    assert s.tenant_id == "t-default"
    assert s.profile == "default"
    assert s.sources["endpoint"] == "profile:default"


def test_precedence_flag_over_env_over_profile(cfg_file: Path) -> None:
    env = {"IMS_CONFIG_FILE": str(cfg_file), "IMS_REGION": "env-region",
           "IMS_ENDPOINT": "https://env.example.com"}
    s = resolve({"endpoint": "https://flag.example.com"}, env)
    assert s.endpoint == "https://flag.example.com"
    assert s.sources["endpoint"] == "flag"
    assert s.region == "env-region"
    assert s.sources["region"] == "env"
    assert s.token == "profile-secret"
    assert s.sources["token"] == "profile:default"


def test_named_profile_via_flag_and_env(cfg_file: Path) -> None:
    env = {"IMS_CONFIG_FILE": str(cfg_file)}
    s = resolve({"profile": "dev"}, env)
    assert (s.endpoint, s.region, s.insecure, s.token) == (
        "http://127.0.0.1:8080", "dev-region", True, None)
    s = resolve({}, {**env, "IMS_PROFILE": "dev"})
    assert s.profile == "dev" and s.region == "dev-region"
    # the flag beats IMS_PROFILE
    s = resolve({"profile": "default"}, {**env, "IMS_PROFILE": "dev"})
    assert s.profile == "default"


def test_unknown_profile_is_an_error(cfg_file: Path) -> None:
    with pytest.raises(ConfigError, match="profile 'nope' not found"):
        resolve({"profile": "nope"}, {"IMS_CONFIG_FILE": str(cfg_file)})


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[default]\nendpont = "x"\n')
    with pytest.raises(ConfigError, match="endpont"):
        resolve({}, {"IMS_CONFIG_FILE": str(path)})


def test_missing_file_is_fine(tmp_path: Path) -> None:
    s = resolve({}, {"IMS_CONFIG_FILE": str(tmp_path / "absent.toml"), "IMS_REGION": "r"})
    assert s.region == "r" and s.endpoint is None


def test_default_path_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.config_path({}) == tmp_path / ".config" / "aioims" / "config.toml"


def test_aws_style_profile_header(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(AWS_STYLE)
    profiles = load_profiles(path)
    assert profiles["staging"]["region"] == "staging"
    assert profiles["default"]["region"] == "r-default"
    s = resolve({"profile": "staging"}, {"IMS_CONFIG_FILE": str(path)})
    assert s.endpoint == "https://staging.example.com"
    assert s.resource_group_id == "rg-1"


def test_simple_parser_matches_tomllib() -> None:
    tomllib = pytest.importorskip("tomllib")
    assert parse_simple_toml(PROFILE_FILE) == tomllib.loads(PROFILE_FILE)


def test_simple_parser_values() -> None:
    data = parse_simple_toml('[a]\ns = "x \\"q\\" # not a comment"\ni = 42\nb = false\n')
    assert data == {"a": {"s": 'x "q" # not a comment', "i": 42, "b": False}}
    with pytest.raises(ConfigError):
        parse_simple_toml("[a]\nnot a pair\n")


def test_emulator_tokens_imply_ids(tmp_path: Path) -> None:
    env = {"IMS_CONFIG_FILE": str(tmp_path / "none.toml"), "IMS_TOKEN": "token-bob"}
    s = resolve({}, env)
    assert s.tenant_id == "7000000000000000002"
    assert s.department_id == "7000000000000000022"
    s = resolve({"tenant_id": "mine"}, env)
    assert s.tenant_id == "mine"


def test_describe_hides_the_token(cfg_file: Path) -> None:
    s = resolve({}, {"IMS_CONFIG_FILE": str(cfg_file)})
    assert "profile-secret" not in repr(s)
    assert "profile-secret" not in str(s.describe())


# --- the CLI over aioims.settings -------------------------------------------------


def _config_json(args: list[str], env: dict[str, str]) -> dict[str, object]:
    import json

    from click.testing import CliRunner

    from aioims.cli.main import cli

    result = CliRunner().invoke(cli, [*args, "config", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_timeout_and_max_attempts_options(cfg_file: Path) -> None:
    env = {"IMS_CONFIG_FILE": str(cfg_file), "IMS_TIMEOUT": "9", "IMS_MAX_ATTEMPTS": "4"}
    data = _config_json([], env)
    assert (data["timeout"], data["maxAttempts"]) == (9.0, 4)
    data = _config_json(["--request-timeout", "2.5", "--max-attempts", "7"], env)
    assert (data["timeout"], data["maxAttempts"]) == (2.5, 7)
    assert data["sources"] == {**data["sources"], "timeout": "flag", "max_attempts": "flag"}  # type: ignore[dict-item]


def test_cli_session_gets_timeout_retry_and_defaults(
    cfg_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aioims.cli.context import State

    monkeypatch.setenv("IMS_CONFIG_FILE", str(cfg_file))
    for name in ("IMS_PROFILE", "IMS_TENANT_ID", "IMS_TIMEOUT", "IMS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    ims = State(flags={"timeout": 4.0, "max_attempts": 2}).session()
    assert ims.timeout == 4.0 and ims.retry.max_attempts == 2  # type: ignore[attr-defined]
    assert ims.defaults.tenant_id == "t-default"  # type: ignore[attr-defined]


def test_bad_timeout_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from aioims.cli.main import cli

    result = CliRunner().invoke(cli, ["--request-timeout", "0", "config"])
    assert result.exit_code == 2


def test_cli_config_is_the_sdk_settings_module() -> None:
    from aioims import settings

    assert config.resolve.__module__ == "aioims.cli.config"
    assert config.Settings is settings.Settings and config.ConfigError is settings.ConfigError
