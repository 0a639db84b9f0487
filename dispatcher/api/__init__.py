"""The HTTP API and web page: ``create_app(settings)`` builds the ASGI app, ``serve()`` runs it under uvicorn."""

from __future__ import annotations

from dispatcher.api.app import ApiConfigError, create_app, serve

__all__ = ["ApiConfigError", "create_app", "serve"]
