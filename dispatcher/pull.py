"""Kept so the documented import works (``from dispatcher.pull import iter_events``): the pull
consumers' client lives in ``dispatcher.receiver.pull``."""

from __future__ import annotations

from dispatcher.receiver.pull import *  # noqa: F403
from dispatcher.receiver.pull import __all__  # noqa: F401
