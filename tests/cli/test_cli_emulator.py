"""``aioims emulator`` in the foreground and ``aioims demo --keep-running``."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

from cli_helpers import ALICE, CLI, cli_env


class Background:
    """A CLI process whose output lines are collected by reader threads."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([*CLI, *args], env=env, text=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._drain, args=(s, sink), daemon=True)
                         for s, sink in ((self.proc.stdout, self.out),
                                         (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _drain(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.out + self.err:
                if text in line:
                    return line
            assert self.proc.poll() is None, "".join(self.out + self.err)
            assert time.monotonic() < deadline, "".join(self.out + self.err)
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._threads:
                t.join(5)
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        return rc


def test_emulator_command_runs_until_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bg = Background(["emulator", "--port", "0", "--data-dir", str(data)],
                    cli_env(tmp_path, None, None))
    try:
        line = bg.wait_for("IMS emulator ready at ")
        url = line.split(" at ", 1)[1].strip()
        text = "".join(bg.out)
        assert "token-alice" in text and "export IMS_ENDPOINT=" in text
        res = subprocess.run([*CLI, "images", "list", "--json"], text=True,
                             capture_output=True, timeout=60,
                             env=cli_env(tmp_path, url, ALICE["token"]))
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["total"] == 0
    finally:
        rc = bg.stop(signal.SIGINT)
    assert rc == 0, "".join(bg.err)
    assert data.is_dir()  # an explicit data dir is kept


def test_emulator_command_json_and_sigterm(tmp_path: Path) -> None:
    bg = Background(["emulator", "--port", "0", "--json"], cli_env(tmp_path, None, None))
    try:
        line = bg.wait_for('"url"')
        info = json.loads(line)
        assert info["url"].startswith("http://127.0.0.1:")
        assert {u["token"] for u in info["users"]} >= {"token-alice", "token-bob"}
    finally:
        rc = bg.stop(signal.SIGTERM)
    assert rc == 0
    assert not Path(info["dataDir"]).exists()  # the temporary data dir is removed


def test_emulator_passes_unknown_options_to_the_module(tmp_path: Path) -> None:
    bg = Background(["emulator", "--port", "0", "--exit-with-stdin", "--log-level", "WARNING"],
                    cli_env(tmp_path, None, None))
    try:
        bg.wait_for("IMS emulator ready at ")
        assert bg.proc.stdin is not None
        bg.proc.stdin.close()  # --exit-with-stdin: the module's own option
        rc = bg.proc.wait(timeout=60)
    finally:
        bg.stop()
    assert rc == 0


def test_demo_keep_running(tmp_path: Path) -> None:
    bg = Background(["demo", "--size", "2M", "--keep-running"], cli_env(tmp_path, None, None))
    try:
        bg.wait_for("press Ctrl-C to stop", timeout=180)
        # stdout and stderr are read by two threads: wait for the summary too
        deadline = time.monotonic() + 60
        while not any("aioims demo summary" in line for line in bg.out):
            assert time.monotonic() < deadline, "".join(bg.out)
            time.sleep(0.05)
        url = next(line for line in bg.err if "listening on" in line).split(" on ", 1)[1].strip()
        res = subprocess.run([*CLI, "images", "list", "--json"], text=True,
                             capture_output=True, timeout=60,
                             env=cli_env(tmp_path, url, ALICE["token"]))
        assert res.returncode == 0, res.stderr
        items = json.loads(res.stdout)["items"]
        assert [i["name"] for i in items] == ["aioims-demo"]
        assert items[0]["status"] == "active"
    finally:
        rc = bg.stop(signal.SIGINT)
    assert rc == 0, "".join(bg.err)
