"""Time-ordered, URL-safe identifiers: ``<prefix>_<26 chars>`` (the ULID layout, Crockford base32)."""

from __future__ import annotations

import base64
import hashlib
import os
import time

# base64's RFC 4648 base32 alphabet, mapped onto Crockford's (which sorts like the values it encodes)
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _b32(value: int) -> str:
    """A 128-bit value as 26 Crockford base32 characters, most significant first."""
    # 26 characters hold 130 bits: place the value in the top 130 bits of 17 bytes and keep 26 chars
    return base64.b32encode((value << 6).to_bytes(17, "big"))[:26].translate(_CROCKFORD).decode()


def new_id(prefix: str) -> str:
    """A sortable id: 48 bits of milliseconds then 80 random bits (ULID layout)."""
    ms = time.time_ns() // 1_000_000
    return f"{prefix}_{_b32((ms << 80) | int.from_bytes(os.urandom(10), 'big'))}"


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """The one delivery id of an event to an endpoint; the same on every fan-out of that pair."""
    digest = hashlib.blake2b(f"{event_id}|{endpoint_id}".encode(), digest_size=16).digest()
    return "dlv_" + _b32(int.from_bytes(digest, "big"))
