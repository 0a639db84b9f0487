"""Django: ``@webhook_required(secret)`` verifies ``request.body`` (the raw body) before the view runs.

```python
from dispatcher.receiver.integrations.django import webhook_required

@webhook_required(settings.WEBHOOK_SECRET)
def hooks(request: HttpRequest, event: dict) -> HttpResponse:
    handle(event)
    return HttpResponse(status=204)
```

The view is called as ``view(request, event, *args, **kwargs)`` and is CSRF-exempt (the signature
authenticates the sender; there is no session or form). A failed verification is answered with
``JsonResponse({"error", "detail"})`` and the error's ``http_status`` (400, 401; 500 for a bad secret);
with ``seen=`` a repeat is answered 200 without calling the view, and the claim is released if the view
raises or answers anything but 2xx. Async views are supported too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
    from django.http import HttpRequest, HttpResponseBase, JsonResponse
    from django.views.decorators.csrf import csrf_exempt
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dispatcher.integrations.django needs Django: pip install django") from exc

from dispatcher.errors import AlreadyProcessed, VerificationError
from dispatcher.receiver.integrations import (
    ALREADY_PROCESSED_BODY,
    SecretSource,
    error_body,
    is_success,
    released_on_error,
    resolve_secret,
)
from dispatcher.receiver.verify import DEFAULT_TOLERANCE_S, SeenIds, verify, webhook_id

View = Callable[..., Any]


def _check(
    request: HttpRequest, secret: SecretSource, tolerance_s: int, seen: SeenIds | None
) -> tuple[Any, str] | JsonResponse:
    """The verified event and its webhook-id, or the response that answers a failure or a repeat."""
    try:
        event = verify(request.body, request.headers, resolve_secret(secret), tolerance_s=tolerance_s, seen=seen)
    except AlreadyProcessed:
        return JsonResponse(ALREADY_PROCESSED_BODY, status=200)
    except VerificationError as exc:
        return JsonResponse(error_body(exc), status=exc.http_status)
    return event, webhook_id(request.headers)


def _settle(seen: SeenIds | None, msg_id: str, response: Any) -> Any:
    """Release the claim on ``msg_id`` unless the view answered 2xx; returns the view's response."""
    if seen is not None and not (isinstance(response, HttpResponseBase) and is_success(response.status_code)):
        seen.forget(msg_id)
    return response


def webhook_required(
    secret: SecretSource, *, tolerance_s: int = DEFAULT_TOLERANCE_S, seen: SeenIds | None = None
) -> Callable[[View], View]:
    """A decorator that verifies the request and calls ``view(request, event, *args, **kwargs)``."""

    def decorate(view: View) -> View:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if seen is None:
                    checked = _check(request, secret, tolerance_s, seen)
                else:  # the Redis client is synchronous: keep it off the event loop
                    checked = await sync_to_async(_check, thread_sensitive=False)(request, secret, tolerance_s, seen)
                if isinstance(checked, JsonResponse):
                    return checked
                event, msg_id = checked
                with released_on_error(seen, msg_id):
                    response = await view(request, event, *args, **kwargs)
                return _settle(seen, msg_id, response)

            return csrf_exempt(markcoroutinefunction(async_wrapper))

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            checked = _check(request, secret, tolerance_s, seen)
            if isinstance(checked, JsonResponse):
                return checked
            event, msg_id = checked
            with released_on_error(seen, msg_id):
                response = view(request, event, *args, **kwargs)
            return _settle(seen, msg_id, response)

        return csrf_exempt(wrapper)

    return decorate


__all__ = ["webhook_required"]
