"""FastAPI and Starlette: ``WebhookVerifier(secret)`` verifies ``await request.body()`` (the raw body).

FastAPI, as a dependency:

```python
from dispatcher.receiver.integrations.fastapi import WebhookVerifier

verifier = WebhookVerifier(os.environ["WEBHOOK_SECRET"])

@app.post("/hooks", status_code=204)
async def hooks(event: dict = Depends(verifier)) -> None:
    handle(event)
```

Starlette (no dependency injection): ``event = await verifier.verify_request(request)``.

A failed verification raises ``HTTPException`` with the error's ``http_status`` (400, 401; 500 for a bad
secret) and ``"<ErrorClass>: <reason>"`` as ``detail``; with ``seen=`` a
repeat raises ``HTTPException(200, "already processed")``, so the sender stops retrying and the endpoint
is not called. As a dependency, the claim is released if the endpoint raises (a response it *returns*
with an error status is not seen here: raise ``HTTPException`` instead). Only Starlette is imported, so
this works without FastAPI installed; FastAPI answers ``{"detail": "..."}``, Starlette plain text.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

try:
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dispatcher.integrations.fastapi needs FastAPI or Starlette: pip install fastapi") from exc

from dispatcher.errors import AlreadyProcessed, VerificationError
from dispatcher.receiver.integrations import ALREADY_PROCESSED_BODY, SecretSource, resolve_secret
from dispatcher.receiver.verify import DEFAULT_TOLERANCE_S, SeenIds, verify, webhook_id


class WebhookVerifier:
    """Verifies Standard Webhooks requests: a FastAPI dependency, or ``verify_request()`` for Starlette."""

    def __init__(
        self, secret: SecretSource, *, tolerance_s: int = DEFAULT_TOLERANCE_S, seen: SeenIds | None = None
    ) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.seen = seen
        # FastAPI reads the dependency's parameters from its signature; give it real classes rather than
        # the postponed (string) annotations of this module, which older FastAPI versions cannot resolve
        # for a callable instance.
        self.__signature__ = inspect.Signature(
            [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)],
            return_annotation=Any,
        )

    def _verify(self, body: bytes, request: Request) -> Any:
        return verify(body, request.headers, resolve_secret(self.secret), tolerance_s=self.tolerance_s, seen=self.seen)

    async def verify_request(self, request: Request) -> Any:
        """The verified event of ``request``; raises ``HTTPException`` 400/401/500 (or 200 for a repeat)."""
        body = await request.body()
        try:
            if self.seen is None:
                return self._verify(body, request)
            # the Redis client behind SeenIds is synchronous: keep it off the event loop
            return await run_in_threadpool(self._verify, body, request)
        except AlreadyProcessed:
            raise HTTPException(status_code=200, detail=ALREADY_PROCESSED_BODY["status"]) from None
        except VerificationError as exc:
            raise HTTPException(status_code=exc.http_status, detail=f"{type(exc).__name__}: {exc}") from None

    async def __call__(self, request: Request) -> AsyncIterator[Any]:
        """The dependency: yields the event; releases the webhook-id claim if the endpoint raises."""
        event = await self.verify_request(request)
        try:
            yield event
        except Exception:
            if self.seen is not None:
                await run_in_threadpool(self.seen.forget, webhook_id(request.headers))
            raise


__all__ = ["WebhookVerifier"]
