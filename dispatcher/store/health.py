"""Endpoints' failing streaks in Redis (``failing``): since when each endpoint has failed without a success."""

from __future__ import annotations

from collections.abc import Mapping

from dispatcher.store.keys import Keys
from dispatcher.store.scripts import Scripts


class FailingStreaks:
    """One hash of streak starts; the worker's ``EndpointHealth`` decides what to note and when to disable."""

    def __init__(self, keys: Keys, scripts: Scripts) -> None:
        self._k = keys
        self._scripts = scripts

    def note(self, answered: Mapping[str, bool], now_ms: int, window_ms: int) -> list[str]:
        """Note per endpoint whether it answered 2xx (ends its streak) or failed (starts one); returns the
        endpoints whose streak has lasted ``window_ms``, their streaks cleared."""
        args: list[object] = [now_ms, window_ms]
        for endpoint_id, ok in answered.items():
            args += (endpoint_id, 1 if ok else 0)
        return [v.decode() for v in self._scripts.run("health", [self._k.failing], args)]
