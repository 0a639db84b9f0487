"""Time-ordered, URL-safe identifiers: ``<prefix>_<26 chars>``."""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A sortable id: 48 bits of milliseconds then 80 random bits (ULID layout)."""
    ms = time.time_ns() // 1_000_000
    rnd = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32((ms << 80) | rnd, 26)}"


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """The one delivery id of an event to an endpoint; the same on every fan-out of that pair."""
    digest = hashlib.blake2b(f"{event_id}|{endpoint_id}".encode(), digest_size=16).digest()
    return "dlv_" + _b32(int.from_bytes(digest, "big"), 26)
