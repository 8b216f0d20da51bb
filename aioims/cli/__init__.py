"""The ``aioims`` command line (``pip install aioims[cli]``): see ``docs/cli.md``."""

from __future__ import annotations

from .main import cli, main

__all__ = ["cli", "main"]
