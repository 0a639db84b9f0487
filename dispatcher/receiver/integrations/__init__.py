"""Drop-in receiver helpers that verify the **raw** request body with ``dispatcher.verify``.

- ``dispatcher.integrations.flask.webhook_required(secret)``: a view decorator; the view gets the event.
- ``dispatcher.integrations.fastapi.WebhookVerifier(secret)``: a dependency, ``event: dict = Depends(v)``;
  ``await v.verify_request(request)`` does the same in a plain Starlette endpoint.
- ``dispatcher.integrations.django.webhook_required(secret)``: a view decorator (CSRF-exempt); the view
  gets ``(request, event, ...)``.

Each answers a failed verification itself with the error's ``http_status``: 400 for a missing or
malformed header or a body that is not JSON, 401 for a bad signature or a timestamp outside the
tolerance, 500 for a secret that is not ``whsec_`` + base64 (``InvalidSecret``: the receiver's
configuration is at fault, so the sender retries until it is fixed), with a JSON body
``{"error": "<ErrorClass>", "detail": "..."}`` (FastAPI/Starlette: ``{"detail": "<ErrorClass>: ..."}``).
No message repeats a secret.

``secret`` is one secret, several (rotation: any may match) or a zero-argument callable returning
either, called on every request (e.g. to read the current secrets from configuration). A secret is
what ``verify`` takes: ``whsec_`` optional, base64 padded or not, or the raw key as ``bytes``.

With ``seen=SeenIds(redis_client)`` the webhook-id is claimed once the request verified; a repeat is
answered ``200 {"status": "already processed"}`` without calling the view, so the sender stops retrying.
If the view raises, or (Flask, Django) answers anything but 2xx, the claim is released so that the
sender's retry is processed: at-least-once delivery, with duplicates absorbed.

This package imports no web framework; each submodule imports only its own, when it is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from dispatcher.errors import VerificationError

if TYPE_CHECKING:
    from dispatcher.receiver.verify import SeenIds

Secrets: TypeAlias = str | bytes | Sequence[str | bytes]
SecretSource: TypeAlias = Secrets | Callable[[], Secrets]

ALREADY_PROCESSED_BODY: dict[str, str] = {"status": "already processed"}


def resolve_secret(source: SecretSource) -> Secrets:
    """The secret(s) to verify with now: ``source`` itself, or what calling it returns."""
    return source() if callable(source) else source


def error_body(exc: VerificationError) -> dict[str, Any]:
    """The JSON body answered for a failed verification (no secret material in it)."""
    return {"error": type(exc).__name__, "detail": str(exc)}


def is_success(status: int) -> bool:
    """Whether an HTTP status counts as delivered for the sender (2xx only)."""
    return 200 <= status < 300


@contextmanager
def released_on_error(seen: SeenIds | None, msg_id: str) -> Iterator[None]:
    """Release the claim on ``msg_id`` if the view raises, so that the sender's retry is processed."""
    try:
        yield
    except Exception:
        if seen is not None:
            seen.forget(msg_id)
        raise


__all__ = [
    "ALREADY_PROCESSED_BODY",
    "SecretSource",
    "Secrets",
    "error_body",
    "is_success",
    "released_on_error",
    "resolve_secret",
]
