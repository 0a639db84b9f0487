"""The web page's login sessions: a random id per login, stored with the digest of the key it used."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence

import redis

from dispatcher.store.keys import Keys


class Sessions:
    """``session:<id>`` -> the SHA-256 of the API key logged in with; TTL'd, deleted at logout."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def create(self, key_digest: bytes, ttl_s: int) -> str:
        session_id = secrets.token_urlsafe(32)
        self._r.set(self._k.session(session_id), key_digest.hex(), ex=ttl_s)
        return session_id

    def check(self, session_id: str, valid_digests: Sequence[bytes]) -> bool:
        """Whether the session exists and its key is still one of ``valid_digests`` (a session whose key
        was removed from the settings is deleted)."""
        if not session_id or len(session_id) > 64 or not session_id.isascii():
            return False
        raw = self._r.get(self._k.session(session_id))
        if raw is None:
            return False
        stored = bytes.fromhex(raw.decode()) if isinstance(raw, bytes) else bytes.fromhex(str(raw))
        found = False
        for digest in valid_digests:
            found |= hmac.compare_digest(stored, digest)
        if not found:
            self.delete(session_id)
        return found

    def delete(self, session_id: str) -> None:
        if session_id and len(session_id) <= 64 and session_id.isascii():
            self._r.delete(self._k.session(session_id))
