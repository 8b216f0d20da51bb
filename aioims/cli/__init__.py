"""The ``aioims`` command line (``pip install 'aioims[cli]'``): see ``docs/cli.md``.

Importing this package imports neither click nor rich; ``cli`` (the click
group) is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from .main import main

__all__ = ["cli", "main"]


def __getattr__(name: str) -> Any:
    if name == "cli":
        from .app import cli

        return cli
    raise AttributeError(name)
