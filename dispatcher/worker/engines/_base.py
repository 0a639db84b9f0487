"""What every engine offers: one POST, answered with at most ``cap`` bytes of body."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from yarl import URL

from dispatcher.ssrf import AddressRefused, is_public_address

__all__ = ["Answer", "Engine", "LiteralGuard"]

MAX_HOSTS_REMEMBERED = 10_000


@dataclass(slots=True)
class Answer:
    """A receiver's answer: status, headers (case-insensitive), the first ``cap`` bytes of the body as sent
    (compressed if it was); ``failure``: the client's exception when reading the body failed after the head
    arrived (the status still counts, as the receiver gave it)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    failure: Exception | None = None


class Engine(Protocol):
    """An HTTP client of one worker process (made and used inside its event loop)."""

    name: str

    async def post(self, url: URL, headers: Mapping[str, str], body: bytes, cap: int) -> Answer:
        """POST ``body`` to ``url``; raise the client's own exception when no answer (no head) came."""
        ...

    async def close(self) -> None: ...


class LiteralGuard:
    """Refuses IP-literal hosts outside what the settings allow. Endpoints' own are refused when loaded
    (``Target.refused``); this also covers a URL a chat platform rendered, which no resolver sees."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._refused: dict[str, bool] = {}  # host as in the URL -> refused

    def check(self, host: str) -> None:
        if self._allow_private:
            return
        refused = self._refused.get(host)
        if refused is None:
            try:
                address = ipaddress.ip_address(host.strip("[]"))
            except ValueError:  # a name: the guarded resolver decides
                refused = False
            else:
                refused = not is_public_address(address)
            if len(self._refused) >= MAX_HOSTS_REMEMBERED:
                self._refused.clear()
            self._refused[host] = refused
        if refused:
            raise AddressRefused(f"refusing non-public address {host}")
