"""What a new user meets (issue #14): usage errors in one line (JSON on stdout
under -f json), per-target delete reports, honest hints, tables that fit
COLUMNS even when piped, running without the extras, banners never wrapped."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import CLI, Runner, cli_env
from rich.cells import cell_len

from aioims.cli.demo import banner, print_lines
from aioims.cli.output import describe_error
from aioims.cli.transfer import resumable
from aioims.errors import NotFoundError, TransferError, UploadFailedError

# --- usage errors -------------------------------------------------------------


def test_bad_filter_is_one_line_on_stderr_exit_2(cli: Runner) -> None:
    res = cli("images", "list", "--filter", "bogus")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --filter:"), res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("flags", [["--json"], ["-f", "json"], ["--format=json"]])
def test_usage_errors_under_json_are_json_on_stdout(cli: Runner, flags: list[str]) -> None:
    for args in (["images", "list", "--filter", "bogus"],
                 ["images", "list", "--no-such-option"],
                 ["images", "list", "-c", "bogus"]):
        res = cli(*args, *flags)
        assert res.returncode == 2, (args, res.stderr)
        error = json.loads(res.stdout)["error"]
        assert error["type"] == "UsageError" and error["exitCode"] == 2
        assert res.stderr == "", res.stderr


def test_click_usage_errors_are_one_line(cli: Runner) -> None:
    for args in (["images", "list", "--no-such-option"], ["images", "list", "--size", "0"],
                 ["frobnicate"], ["images", "list", "-f", "yaml"]):
        res = cli(*args)
        assert res.returncode == 2, args
        assert len(res.stderr.splitlines()) == 1, (args, res.stderr)
        assert res.stderr.startswith("Error: ")


def test_unknown_column_is_a_usage_error(cli: Runner) -> None:
    res = cli("images", "list", "-c", "bogus")
    assert res.returncode == 2
    assert "unknown column 'bogus'" in res.stderr and "imageId" in res.stderr


def test_no_placeholder_request_id() -> None:
    err = TransferError("cannot connect: refused")
    assert describe_error(err) == "cannot connect: refused"
    found = NotFoundError("gone", code="IMG.DBGet.NoData", request_id="rid-7", http_status=400)
    assert describe_error(found).endswith("(HTTP 400, request id: rid-7)")


def test_connection_error_has_no_placeholder_request_id(cli: Runner) -> None:
    res = cli("images", "list", url="http://127.0.0.1:9")
    assert res.returncode == 1
    assert "request id: -" not in res.stderr


# --- delete continues ---------------------------------------------------------


def test_delete_continues_past_a_failure_and_reports_each(cli: Runner) -> None:
    a = cli("images", "create", "--name", "del-a", "--json").ok().json["imageId"]
    c = cli("images", "create", "--name", "del-c", "--json").ok().json["imageId"]
    missing = "img-doesnotexist0042"
    res = cli("images", "delete", "-y", a, missing, c, "--json")
    assert res.returncode == 1, res.stderr
    doc = res.json
    assert doc["deleted"] == [a, c]
    assert [f["id"] for f in doc["failed"]] == [missing]
    assert doc["failed"][0]["error"]["code"] == "IMG.DBGet.NoData"
    for image_id in (a, c):
        assert cli("images", "show", image_id).returncode == 1  # really gone
    # human: a row per target on stdout, the failure with its code on stderr
    b = cli("images", "create", "--name", "del-b", "--json").ok().json["imageId"]
    res = cli("images", "delete", "-y", missing, b)
    assert res.returncode == 1
    rows = {line.split()[0]: line.split()[1] for line in res.stdout.splitlines()[1:3]}
    assert rows == {missing: "failed", b: "deleted"}, res.stdout
    assert f"Error: {missing}: IMG.DBGet.NoData" in res.stderr


# --- formats end to end, COLUMNS honoured when piped --------------------------


def test_formats_and_width_through_the_cli(cli: Runner) -> None:
    long_name = "a rather long image name that will not fit on a narrow terminal"
    made = cli("images", "create", "--name", long_name, "--json").ok().json["imageId"]
    for width in (60, 80, 120):
        res = cli("images", "list", "--size", "50", env={"COLUMNS": str(width)}).ok()
        lines = res.stdout.splitlines()
        assert all(cell_len(line) <= width and line == line.rstrip() for line in lines)
        assert any(made in line for line in lines)
    value = cli("images", "list", "--size", "50", "-f", "value", "-c", "id", "-c", "name").ok()
    assert f"{made}\t{long_name}" in value.stdout.splitlines()
    table = cli("images", "list", "--size", "50", "-f", "csv", "-c", "id,status").ok()
    rows = list(csv.reader(io.StringIO(table.stdout)))
    assert rows[0] == ["imageId", "status"] and [made, "queued"] in rows
    doc = cli("images", "show", made, "-f", "json", "-c", "name").ok().json
    assert doc == {"name": long_name}
    assert cli("images", "show", made, "-f", "value", "-c", "status").ok().stdout == "queued\n"


# --- hints after a failed upload ------------------------------------------------


def test_resume_hint_only_when_resumable() -> None:
    said = UploadFailedError("x", image_id="img-1", stage="transfer", resumable=True)
    assert resumable(said)
    # the error's own word wins, even over a resumable cause
    cause = TransferError("part 3 failed")
    cause.resumable = True  # type: ignore[attr-defined]
    denied = UploadFailedError("x", image_id="img-1", stage="transfer", resumable=False)
    denied.__cause__ = cause
    assert not resumable(denied)
    assert not resumable(UploadFailedError("x", image_id="img-1", stage="done"))
    assert not resumable(None)

    class Silent(Exception):  # an error that does not say: stage + cause decide
        def __init__(self, stage: str) -> None:
            super().__init__(stage)
            self.stage = stage

    at_transfer, at_done = Silent("transfer"), Silent("done")
    at_transfer.__cause__ = at_done.__cause__ = cause
    assert resumable(at_transfer) and not resumable(at_done)


# --- without the extras ----------------------------------------------------------

_BLOCK = textwrap.dedent("""
    import sys

    class Blocker:
        def __init__(self, names):
            self.names = names

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker(NAMES))
""")


def _blocked(names: set[str], code: str, tmp_path: Path,
             argv: list[str]) -> subprocess.CompletedProcess[str]:
    script = _BLOCK.replace("NAMES", repr(sorted(names))) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                          text=True, timeout=120, env=cli_env(tmp_path, None, None))


@pytest.mark.parametrize("entry", [
    "from aioims.cli.main import main\nmain()",  # the console script
    "import runpy\nrunpy.run_module('aioims', run_name='__main__')",  # python -m aioims
])
@pytest.mark.parametrize("missing", [{"click"}, {"rich"}, {"click", "rich"}])
def test_without_the_cli_extra(tmp_path: Path, entry: str, missing: set[str]) -> None:
    res = _blocked(missing, entry, tmp_path, ["--help"])
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "pip install 'aioims[cli]'" in lines[0]


def test_entry_module_does_not_import_click(tmp_path: Path) -> None:
    code = ("import sys\nimport aioims.cli.main\nimport aioims.cli\n"
            "print(sorted(m for m in ('click', 'rich') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=cli_env(tmp_path, None, None))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_python_m_aioims_is_the_cli(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "aioims", "--version"], capture_output=True,
                         text=True, timeout=120, env=cli_env(tmp_path, None, None))
    assert res.returncode == 0 and "aioims" in res.stdout


def test_emulator_module_without_moto_names_the_extra(tmp_path: Path) -> None:
    code = ("import runpy, sys\nsys.argv = ['python -m aioims.emulator', '--port', '0']\n"
            "runpy.run_module('aioims.emulator', run_name='__main__')")
    res = _blocked({"moto"}, code, tmp_path, [])
    assert res.returncode == 2, res.stderr
    assert "pip install 'aioims[emulator]'" in res.stderr


def test_demo_without_moto_names_the_extra(tmp_path: Path) -> None:
    code = "from aioims.cli.main import main\nmain()"
    res = _blocked({"moto"}, code, tmp_path, ["demo", "--size", "1M"])
    assert res.returncode == 2, res.stderr
    assert "pip install 'aioims[emulator]'" in res.stderr


# --- banners ------------------------------------------------------------------------


def test_banner_exports_are_never_wrapped(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    url = "http://127.0.0.1:40113"
    lines = banner(url, Path("/tmp/some/rather/long/data/directory/for/the/emulator"))
    print_lines(lines)
    err = capsys.readouterr().err.splitlines()
    assert err == lines
    exports = [line.strip() for line in err if line.strip().startswith("export ")]
    assert exports == [f"export IMS_ENDPOINT={url}", "export IMS_REGION=region0",
                       "export IMS_TOKEN=token-alice"]
    assert all(cell_len(line) <= 60 for line in err if "export" in line)


def test_emulator_command_banner_in_60_columns(tmp_path: Path) -> None:
    """The `aioims emulator` banner on a 60-column terminal: each export whole."""
    env = cli_env(tmp_path, None, None, COLUMNS="60")
    proc = subprocess.Popen([*CLI, "emulator", "--port", "0"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        out = []
        for line in proc.stdout:
            out.append(line.rstrip("\n"))
            if line.startswith("IMS emulator ready at"):
                break
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    url = out[-1].split(" at ", 1)[1]
    assert f"  export IMS_ENDPOINT={url}" in out
    assert "  export IMS_TOKEN=token-alice" in out
