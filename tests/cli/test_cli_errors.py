"""Exit codes and error reporting: 2 for usage/validation, 1 for API errors
(with the IMG.* code and the request id on stderr); the token never shows."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import REQUEST_ID, Runner, make_file

SECRET = "sekrit-token-do-not-print-4711"


def test_show_missing_image_is_exit_1_with_code_and_request_id(cli: Runner) -> None:
    res = cli("images", "show", "img-doesnotexist0001")
    assert res.returncode == 1
    assert "IMG.DBGet.NoData" in res.stderr
    assert REQUEST_ID.search(res.stderr), res.stderr
    assert res.stdout == ""


def test_json_errors_are_json_on_stderr(cli: Runner) -> None:
    res = cli("--json", "images", "show", "img-doesnotexist0001")
    assert res.returncode == 1
    err = res.error
    assert err["code"] == "IMG.DBGet.NoData"
    assert err["type"] == "NotFoundError"
    assert err["requestId"]
    assert err["httpStatus"] == 400


def test_global_options_work_after_the_command(cli: Runner) -> None:
    res = cli("images", "show", "img-doesnotexist0001", "--json")
    assert res.returncode == 1 and res.error["code"] == "IMG.DBGet.NoData"


def test_unknown_option_is_exit_2(cli: Runner) -> None:
    res = cli("images", "list", "--no-such-option")
    assert res.returncode == 2
    assert "No such option" in res.stderr


def test_unknown_command_is_exit_2(cli: Runner) -> None:
    assert cli("frobnicate").returncode == 2


def test_invalid_name_is_exit_2_and_nothing_is_created(cli: Runner, tmp_path: Path) -> None:
    before = cli("images", "list", "--all", "--size", "50", "--json").ok().json["total"]
    res = cli("images", "create", "--name", "bad/name")
    assert res.returncode == 2, res.stderr
    assert "name" in res.stderr
    res = cli("upload", str(make_file(tmp_path / "f.raw", 1024)), "--name", " leading space")
    assert res.returncode == 2, res.stderr
    after = cli("images", "list", "--all", "--size", "50", "--json").ok().json["total"]
    assert after == before


def test_sdk_validation_error_is_exit_2(cli: Runner) -> None:
    # duplicate user ids: rejected by the SDK before anything is sent
    res = cli("share", "img-doesnotexist0001", "7000000000000000202", "7000000000000000202")
    assert res.returncode == 2, res.stderr
    assert "duplicate" in res.stderr


def test_bad_values_are_exit_2(cli: Runner, tmp_path: Path) -> None:
    f = make_file(tmp_path / "f.raw", 1024)
    assert cli("upload", str(f), "--part-size", "lots").returncode == 2
    assert cli("upload", str(tmp_path / "missing.raw")).returncode == 2
    assert cli("images", "list", "--size", "0").returncode == 2
    assert cli("images", "create", "--name", "x", "--disk-format", "vmdk").returncode == 2
    assert cli("demo", "--size", "12Q").returncode == 2


def test_missing_endpoint_is_exit_2(cli: Runner, tmp_path: Path) -> None:
    res = cli("images", "list", env={"IMS_ENDPOINT": "", "IMS_REGION": ""})
    assert res.returncode == 2
    assert "endpoint" in res.stderr


def test_unknown_profile_is_exit_2(cli: Runner) -> None:
    res = cli("--profile", "nope", "images", "list")
    assert res.returncode == 2
    assert "nope" in res.stderr


def test_auth_failure_never_prints_the_token(cli: Runner) -> None:
    for args in (["--token", SECRET, "images", "list"],
                 ["--token", SECRET, "--debug", "images", "list"],
                 ["--token", SECRET, "--json", "--debug", "images", "show", "img-x"],
                 ["--token", SECRET, "config"],
                 ["--token", SECRET, "--json", "config"]):
        res = cli(*args, token=None)
        assert SECRET not in res.stdout + res.stderr, args
    res = cli("--token", SECRET, "images", "list", token=None)
    assert res.returncode == 1
    assert "IMG.OperationDenied" in res.stderr
    assert REQUEST_ID.search(res.stderr)


def test_token_from_env_never_printed_in_debug(cli: Runner) -> None:
    res = cli("--debug", "images", "show", "img-doesnotexist0001", token=SECRET)
    assert res.returncode == 1
    assert "DEBUG aioims" in res.stderr
    assert SECRET not in res.stdout + res.stderr


def test_connection_error_is_exit_1(cli: Runner) -> None:
    res = cli("images", "list", url="http://127.0.0.1:9")
    assert res.returncode == 1
    assert "Error" in res.stderr


def test_config_shows_sources_without_secrets(cli: Runner, cli_home: Path) -> None:
    cfg = cli_home / "profiles.toml"
    cfg.write_text('[default]\nregion = "from-profile"\n\n[profile.other]\n'
                   f'endpoint = "http://example.invalid"\nregion = "r2"\ntoken = "{SECRET}"\n')
    res = cli("--json", "config", env={"IMS_CONFIG_FILE": str(cfg), "IMS_REGION": ""}).ok()
    data = res.json
    assert data["region"] == "from-profile"
    assert data["sources"]["region"] == "profile:default"
    assert data["sources"]["endpoint"] == "env"
    res = cli("--json", "--profile", "other", "config", token=None,
              env={"IMS_CONFIG_FILE": str(cfg), "IMS_ENDPOINT": ""}).ok()
    assert res.json["endpoint"] == "http://example.invalid"
    assert res.json["token"] == "***"
    assert SECRET not in res.stdout + res.stderr
