"""A Flask webhook receiver that verifies every request with ``dispatcher.integrations.flask``.

    WEBHOOK_SECRET=whsec_... python examples/flask_receiver.py          # http://127.0.0.1:8001/hooks

``WEBHOOK_SECRET`` holds the endpoint's secret (several, space-separated, while rotating). With
``WEBHOOK_REDIS_URL`` set, a webhook-id already handled is answered 200 without handling it again.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from flask import Flask

from dispatcher.receiver.integrations.flask import webhook_required
from dispatcher.receiver.verify import SeenIds


def current_secrets() -> list[str]:
    """Read on every request, so a rotated secret is picked up from the environment of a restarted worker."""
    return os.environ["WEBHOOK_SECRET"].split()


redis_url = os.environ.get("WEBHOOK_REDIS_URL")
seen = SeenIds(redis.Redis.from_url(redis_url), ttl_s=2 * 24 * 3600) if redis_url else None

app = Flask(__name__)


@app.post("/hooks")
@webhook_required(current_secrets, seen=seen)
def hooks(event: dict[str, Any] | list[dict[str, Any]]) -> tuple[str, int]:
    for item in event if isinstance(event, list) else [event]:  # a batched endpoint sends a list
        print(f"{item.get('id')} {item.get('type')}: {item.get('data')}", flush=True)
    return "", 204


if __name__ == "__main__":
    current_secrets()  # fail at start, not on the first request, when WEBHOOK_SECRET is unset
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))
