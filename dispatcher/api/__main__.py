"""``python -m dispatcher.api [--host H] [--port P]``: the HTTP API under uvicorn (what ``dispatcher api`` runs)."""

from __future__ import annotations

import argparse
import logging
import sys

from dispatcher.api.app import serve
from dispatcher.errors import ConfigError
from dispatcher.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="dispatcher api", description="Serve the HTTP API and web page.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(Settings(), host=args.host, port=args.port)
    except ConfigError as exc:
        sys.exit(f"Error: {exc}")


if __name__ == "__main__":
    main()
