"""The Lua scripts in ``store/lua/``: loading, and calling them with their keys and arguments.

Each script does one step that must be atomic in Redis. Its file starts with a header naming every
``KEYS[n]`` and ``ARGV[n]`` it takes; it gets every key it touches through ``KEYS`` (names made by
``store.keys``) and never builds one, which is also what Redis Cluster requires. Times come from Redis'
own clock (``--#include now``). The classes that own the keys (``store.queue``, ``store.records``, ...)
call the scripts through ``Scripts``, with typed arguments, and turn the replies into typed values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import redis

LUA_DIR = Path(__file__).resolve().parent / "lua"
_INCLUDE = re.compile(r"^--#include (\w+)$", re.M)
_HEADER_KEY = re.compile(r"^-- KEYS\[(\d+)(?:\.\.\])?\]?\s+(\w+)?", re.M)

NAMES = (
    "enqueue",
    "claim_events",
    "fanout_commit",
    "claim_deliveries",
    "record",
    "replay",
    "handoff",
    "take_slots",
    "count_due",
    "read_stream",
    "rate_reserve",
    "rate_pause",
    "health",
    "endpoint_write",
    "purge",
)


@cache
def source(name: str) -> str:
    """The Lua source of script ``name``, with its ``--#include`` lines expanded."""
    text = (LUA_DIR / f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: (LUA_DIR / f"{m.group(1)}.lua").read_text().strip(), text)


def header(name: str) -> str:
    """The script's leading comment: what it does, and its ``KEYS`` and ``ARGV``."""
    lines = []
    for line in (LUA_DIR / f"{name}.lua").read_text().splitlines():
        if not line.startswith("--") or line.startswith("--#"):
            break
        lines.append(line)
    return "\n".join(lines)


Reply = Any  # what redis-py returns for a script: nested lists of bytes and ints


class Scripts:
    """Every script, registered on one client (``EVALSHA``, loaded again by redis-py after a restart)."""

    def __init__(self, client: redis.Redis) -> None:
        self._registered = {name: client.register_script(source(name)) for name in NAMES}

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Reply:
        """Call script ``name`` (on ``client``, e.g. a pipeline, when given)."""
        return self._registered[name](keys=keys, args=args, client=client)
