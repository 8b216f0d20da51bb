"""Helpers of the CLI tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

REGION = "region0"
ALICE = {"token": "token-alice", "user_id": "7000000000000000101",
         "tenant_id": "7000000000000000001", "department_id": "7000000000000000011"}
BOB = {"token": "token-bob", "user_id": "7000000000000000202",
       "tenant_id": "7000000000000000002", "department_id": "7000000000000000022"}
CAROL = {"token": "token-carol", "user_id": "7000000000000000303",
         "tenant_id": "7000000000000000003", "department_id": "7000000000000000033"}
REQUEST_ID = re.compile(r"request id: [0-9a-zA-Z-]{8,}")


@attrs.define
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error(self) -> Any:
        """The ``{"error": ...}`` line of stderr (``--json`` mode)."""
        for line in reversed(self.stderr.splitlines()):
            if line.startswith('{"error"'):
                return json.loads(line)["error"]
        raise AssertionError(f"no JSON error on stderr: {self.stderr!r}")

    def ok(self) -> Result:
        assert self.returncode == 0, f"{self.args}: rc={self.returncode}\n{self.stderr}"
        return self


def cli_env(home: Path, url: str | None, token: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMS_")}
    env.update(HOME=str(home), IMS_CONFIG_FILE=str(home / "config.toml"), COLUMNS="200",
               PYTHONUNBUFFERED="1")
    if url:
        env.update(IMS_ENDPOINT=url, IMS_REGION=REGION)
    if token:
        env["IMS_TOKEN"] = token
    env.update(extra)
    return env


CLI = [sys.executable, "-m", "aioims.cli"]

Runner = Callable[..., Result]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_file(path: Path, size: int, seed: int = 0) -> Path:
    block = hashlib.sha256(str(seed).encode()).digest() * (65536 // 32)
    with open(path, "wb") as fh:
        left = size
        counter = 0
        while left > 0:
            chunk = (counter.to_bytes(8, "big") + block)[: min(len(block), left)]
            fh.write(chunk)
            left -= len(chunk)
            counter += 1
    return path
