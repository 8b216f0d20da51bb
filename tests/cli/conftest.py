"""Fixtures of the CLI tests: the emulator subprocess of ``aioims.testing``
(``ims_emulator``), and a runner that calls ``python -m aioims.cli`` in a
subprocess with an isolated HOME (config file, checkpoints)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_helpers import CLI, Result, Runner, cli_env

from aioims.testing import EmulatorProcess, ims_emulator

__all__ = ["ims_emulator"]


@pytest.fixture(scope="session")
def cli_emulator(ims_emulator: EmulatorProcess) -> EmulatorProcess:
    """The shared emulator subprocess of :mod:`aioims.testing`."""
    return ims_emulator


@pytest.fixture(scope="session")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="session")
def cli(cli_emulator: EmulatorProcess, cli_home: Path) -> Runner:
    """``cli("images", "list", "--json", token="token-bob")`` -> :class:`Result`."""

    def run(*args: str, token: str | None = "token-alice", url: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 180) -> Result:
        full_env = cli_env(cli_home, url or cli_emulator.url, token, **(env or {}))
        proc = subprocess.run([*CLI, *args], env=full_env, capture_output=True, text=True,
                              timeout=timeout)
        return Result(list(args), proc.returncode, proc.stdout, proc.stderr)

    return run


