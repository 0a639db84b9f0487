"""Kept so the documented import works: the helpers live in ``dispatcher.receiver.integrations.flask``."""

from __future__ import annotations

from dispatcher.receiver.integrations.flask import *  # noqa: F403
from dispatcher.receiver.integrations.flask import __all__  # noqa: F401
