"""``python -m aioims.cli`` (the same program as ``aioims``)."""

from .main import main

main()
