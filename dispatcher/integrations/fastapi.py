"""Kept so the documented import works: the helpers live in ``dispatcher.receiver.integrations.fastapi``."""

from __future__ import annotations

from dispatcher.receiver.integrations.fastapi import *  # noqa: F403
from dispatcher.receiver.integrations.fastapi import __all__  # noqa: F401
