"""Flask: ``@webhook_required(secret)`` verifies ``request.get_data()`` (the raw body) before the view runs.

```python
from dispatcher.receiver.integrations.flask import webhook_required

@app.post("/hooks")
@webhook_required(os.environ["WEBHOOK_SECRET"])
def hooks(event: dict) -> tuple[str, int]:
    handle(event)
    return "", 204
```

The event is passed as the view's first positional argument (URL variables follow as keywords). A failed
verification is answered with JSON ``{"error", "detail"}`` and the error's ``http_status`` (400, 401; 500
for a bad secret); with ``seen=`` a repeat is answered 200 without calling the view, and the claim is
released if the view raises or answers anything but 2xx. Async views (``flask[async]``) are supported
too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

try:
    from flask import Response, jsonify, make_response, request
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dispatcher.integrations.flask needs Flask: pip install flask") from exc

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


def _check(secret: SecretSource, tolerance_s: int, seen: SeenIds | None) -> tuple[Any, str] | Response:
    """The verified event and its webhook-id, or the response that answers a failure or a repeat."""
    headers = dict(request.headers.items())  # werkzeug's Headers is not a Mapping
    try:
        event = verify(request.get_data(), headers, resolve_secret(secret), tolerance_s=tolerance_s, seen=seen)
    except AlreadyProcessed:
        return make_response(jsonify(ALREADY_PROCESSED_BODY), 200)
    except VerificationError as exc:
        return make_response(jsonify(error_body(exc)), exc.http_status)
    return event, webhook_id(headers)


def _settle(seen: SeenIds | None, msg_id: str, result: Any) -> Any:
    """Release the claim on ``msg_id`` unless the view answered 2xx; returns what the view returned."""
    if seen is None:
        return result
    response = make_response(result)
    if not is_success(response.status_code):
        seen.forget(msg_id)
    return response


def webhook_required(
    secret: SecretSource, *, tolerance_s: int = DEFAULT_TOLERANCE_S, seen: SeenIds | None = None
) -> Callable[[View], View]:
    """A decorator that verifies the request and calls the view with the parsed event first."""

    def decorate(view: View) -> View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                checked = _check(secret, tolerance_s, seen)
                if isinstance(checked, Response):
                    return checked
                event, msg_id = checked
                with released_on_error(seen, msg_id):
                    result = await view(event, *args, **kwargs)
                return _settle(seen, msg_id, result)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            checked = _check(secret, tolerance_s, seen)
            if isinstance(checked, Response):
                return checked
            event, msg_id = checked
            with released_on_error(seen, msg_id):
                result = view(event, *args, **kwargs)
            return _settle(seen, msg_id, result)

        return wrapper

    return decorate


__all__ = ["webhook_required"]
