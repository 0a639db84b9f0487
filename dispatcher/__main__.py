"""``python -m dispatcher``: the same command line as the ``dispatcher`` script."""

from __future__ import annotations

from dispatcher.cli.main import main

if __name__ == "__main__":
    main()
