"""``python -m benchmarks.bench [options]`` from a source checkout: the same as ``dispatcher bench [options]``."""

from __future__ import annotations

import sys

from dispatcher.cli.main import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
