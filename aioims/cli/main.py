"""Entry point of the ``aioims`` console script (``aioims.cli.main:main``),
``python -m aioims`` and ``python -m aioims.cli``.

This module imports neither click nor rich at import time: :func:`main`
first checks that the ``cli`` extra is installed and otherwise prints one
line naming ``pip install 'aioims[cli]'`` (exit 2).  The command tree lives
in :mod:`aioims.cli.app`.

Exit codes: 0 success, 1 API/transport/transfer error (code and request id on
stderr), 2 usage or client-side validation error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

EXIT_USAGE = 2
INSTALL_HINT = "pip install 'aioims[cli]'"
_EXTRA_MODULES = ("click", "rich")


def missing_extra() -> str | None:
    """The first module of the ``cli`` extra that cannot be imported, or None."""
    import importlib

    for name in _EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command line and exit with its exit code."""
    missing = missing_extra()
    if missing is not None:
        sys.stderr.write(f"aioims: the command line needs the 'cli' extra ({missing} is not "
                         f"installed): {INSTALL_HINT}\n")
        sys.exit(EXIT_USAGE)
    from .app import run_cli

    sys.exit(run_cli(sys.argv[1:] if argv is None else argv))


def __getattr__(name: str) -> Any:
    if name == "cli":  # the click group, for embedding and tests
        from .app import cli

        return cli
    raise AttributeError(name)


if __name__ == "__main__":  # pragma: no cover
    main()
