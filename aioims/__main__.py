"""``python -m aioims``: the ``aioims`` command line (needs ``aioims[cli]``)."""

from .cli.main import main

if __name__ == "__main__":
    main()
