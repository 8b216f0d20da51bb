"""aioims.settings: the one settings module (flags > environment > profile),
as used by IMSSession.from_env, the CLI and aioims.migrate."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from aioims import IMSSession, RetryPolicy, TenantDefaults, ValidationError
from aioims.settings import ConfigError, config_path, load_defaults, resolve

PROFILES = """
[default]
endpoint = "https://ims.example.com"
region = "region0"
token = "profile-secret"
tenant_id = "t-default"
department_id = "d-default"
timeout = 30
max_attempts = 5

[profile.dev]
endpoint = "http://127.0.0.1:8080"
region = "dev-region"
insecure = true
timeout = 2.5
resource_group_id = "rg-dev"
"""


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("XDG_CONFIG_HOME", "IMS_CONFIG_FILE", "IMS_PROFILE", "IMS_ENDPOINT",
                 "IMS_REGION", "IMS_TOKEN", "IMS_TENANT_ID", "IMS_DEPARTMENT_ID",
                 "IMS_TIMEOUT", "IMS_MAX_ATTEMPTS", "IMS_VERIFY_SSL", "IMS_INSECURE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(PROFILES)
    return path


def test_path_honours_ims_config_file_then_xdg_then_home(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert config_path({"HOME": str(home)}) == home / ".config/aioims/config.toml"
    xdg = tmp_path / "xdg"
    assert config_path({"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}) == (
        xdg / "aioims/config.toml"
    )
    # a relative XDG_CONFIG_HOME is invalid per the spec and ignored
    assert config_path({"HOME": str(home), "XDG_CONFIG_HOME": "rel"}) == (
        home / ".config/aioims/config.toml"
    )
    explicit = tmp_path / "x.toml"
    assert config_path({"XDG_CONFIG_HOME": str(xdg), "IMS_CONFIG_FILE": str(explicit)}) == explicit


def test_xdg_profile_file_is_read(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "aioims").mkdir(parents=True)
    (xdg / "aioims/config.toml").write_text('[default]\nregion = "from-xdg"\n')
    settings = resolve({}, {"XDG_CONFIG_HOME": str(xdg), "HOME": str(tmp_path)})
    assert settings.region == "from-xdg"
    assert settings.sources["region"] == "profile:default"


def test_precedence_and_typed_values(cfg: Path) -> None:
    env = {"IMS_CONFIG_FILE": str(cfg), "IMS_TIMEOUT": "7", "IMS_REGION": "env-region"}
    s = resolve({"timeout": 3, "tenant_id": "t-flag"}, env)
    assert (s.timeout, s.sources["timeout"]) == (3.0, "flag")
    assert (s.region, s.sources["region"]) == ("env-region", "env")
    assert (s.max_attempts, s.sources["max_attempts"]) == (5, "profile:default")
    assert s.defaults == TenantDefaults(tenant_id="t-flag", department_id="d-default")
    assert s.retry_policy() == RetryPolicy(max_attempts=5)
    assert "profile-secret" not in repr(s) and "profile-secret" not in str(s.describe())


def test_named_profile(cfg: Path) -> None:
    s = resolve({}, {"IMS_CONFIG_FILE": str(cfg)}, profile="dev")
    assert (s.endpoint, s.insecure, s.timeout, s.token) == (
        "http://127.0.0.1:8080", True, 2.5, None)  # fmt: skip
    assert s.resource_group_id == "rg-dev" and s.tenant_id is None
    assert s.session_kwargs()["verify_ssl"] is False


@pytest.mark.parametrize(
    ("flags", "env", "field"),
    [
        ({"timeout": "soon"}, {}, "timeout"),
        ({}, {"IMS_TIMEOUT": "0"}, "IMS_TIMEOUT"),
        ({}, {"IMS_MAX_ATTEMPTS": "x"}, "IMS_MAX_ATTEMPTS"),
        ({"max_attempts": 0}, {}, "max_attempts"),
        ({"colour": "red"}, {}, "colour"),
    ],
)
def test_bad_values_name_their_source(
    flags: dict[str, object], env: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(flags, env)
    assert info.value.field == field
    assert isinstance(info.value, ValidationError)


def test_bad_profile_value_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[default]\nmax_attempts = "many"\n')
    with pytest.raises(ConfigError, match=r"max_attempts \(profile 'default' of .*c.toml\)"):
        resolve({}, {"IMS_CONFIG_FILE": str(path)})


def test_unknown_profile_and_key(cfg: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile 'nope' not found"):
        resolve({}, {"IMS_CONFIG_FILE": str(cfg), "IMS_PROFILE": "nope"})
    bad = tmp_path / "bad.toml"
    bad.write_text('[default]\nverify_ssl = false\n')
    with pytest.raises(ConfigError, match="verify_ssl"):
        resolve({}, {"IMS_CONFIG_FILE": str(bad)})


def test_from_env_profile_overrides_and_defaults(cfg: Path) -> None:
    env = {"IMS_CONFIG_FILE": str(cfg), "IMS_DEPARTMENT_ID": "d-env"}
    ims = IMSSession.from_env(env, max_attempts=2)
    assert ims.endpoint == "https://ims.example.com/api/image/v1"
    assert ims.timeout == 30 and ims.retry.max_attempts == 2
    assert ims.defaults == TenantDefaults(tenant_id="t-default", department_id="d-env")
    assert "profile-secret" not in repr(ims)
    dev = IMSSession.from_env(env, profile="dev")
    assert dev.region == "dev-region" and dev.timeout == 2.5
    assert dev.defaults.resource_group_id == "rg-dev"
    # views keep the defaults
    assert dev.with_options(timeout=1).defaults == dev.defaults


def test_from_env_reads_os_environ_and_the_home_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".config/aioims").mkdir(parents=True)
    (home / ".config/aioims/config.toml").write_text(PROFILES)
    monkeypatch.setenv("IMS_PROFILE", "dev")
    monkeypatch.setenv("IMS_TENANT_ID", "t-env")
    ims = IMSSession.from_env()
    assert ims.region == "dev-region" and ims.defaults.tenant_id == "t-env"


def test_missing_endpoint_names_the_variable() -> None:
    with pytest.raises(ValidationError) as info:
        IMSSession.from_env({"IMS_REGION": "r"})
    assert info.value.field == "IMS_ENDPOINT"


def test_emulator_tokens_imply_tenant_ids() -> None:
    s = resolve({}, {"IMS_TOKEN": "token-carol"})
    assert (s.tenant_id, s.sources["tenant_id"]) == ("7000000000000000003", "emulator-user")
    assert resolve({"tenant_id": "mine"}, {"IMS_TOKEN": "token-carol"}).tenant_id == "mine"


def test_deprecated_alias_warns_once_per_resolve() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = resolve({}, {"IMS_VERIFY_SSL": "false"})
    assert s.insecure and s.sources["insecure"] == "env:IMS_VERIFY_SSL"
    assert [w.category for w in caught] == [DeprecationWarning]


def test_load_defaults(cfg: Path) -> None:
    assert load_defaults({"IMS_CONFIG_FILE": str(cfg)}) == TenantDefaults(
        tenant_id="t-default", department_id="d-default"
    )
    assert not load_defaults({})
