"""``python -m aioims.cli``."""

from .main import main

main()
