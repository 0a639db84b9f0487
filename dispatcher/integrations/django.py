"""Kept so the documented import works: the helpers live in ``dispatcher.receiver.integrations.django``."""

from __future__ import annotations

from dispatcher.receiver.integrations.django import *  # noqa: F403
from dispatcher.receiver.integrations.django import __all__  # noqa: F401
