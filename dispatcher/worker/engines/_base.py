"""What every engine offers: one POST, answered with at most ``cap`` bytes of body."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from yarl import URL

__all__ = ["Answer", "Engine"]


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
