"""Kept so the documented import works (``from dispatcher.verify import SeenIds``): the code lives in
``dispatcher.receiver.verify``; ``dispatcher.verify`` itself is the function."""

from __future__ import annotations

from dispatcher.receiver.verify import *  # noqa: F403
from dispatcher.receiver.verify import __all__  # noqa: F401
