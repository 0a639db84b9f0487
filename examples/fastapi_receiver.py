"""A FastAPI webhook receiver that verifies every request with ``dispatcher.integrations.fastapi``.

    WEBHOOK_SECRET=whsec_... python examples/fastapi_receiver.py        # http://127.0.0.1:8002/hooks
    WEBHOOK_SECRET=whsec_... uvicorn --app-dir examples fastapi_receiver:app --port 8002

``WEBHOOK_SECRET`` holds the endpoint's secret (several, space-separated, while rotating). With
``WEBHOOK_REDIS_URL`` set, a webhook-id already handled is answered 200 without handling it again.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from fastapi import Depends, FastAPI, Response

from dispatcher.receiver.integrations.fastapi import WebhookVerifier
from dispatcher.receiver.verify import SeenIds


def current_secrets() -> list[str]:
    return os.environ["WEBHOOK_SECRET"].split()


redis_url = os.environ.get("WEBHOOK_REDIS_URL")
seen = SeenIds(redis.Redis.from_url(redis_url), ttl_s=2 * 24 * 3600) if redis_url else None
verifier = WebhookVerifier(current_secrets, seen=seen)

app = FastAPI()


@app.post("/hooks", status_code=204)
async def hooks(event: Any = Depends(verifier)) -> Response:  # noqa: B008
    for item in event if isinstance(event, list) else [event]:  # a batched endpoint sends a list
        print(f"{item.get('id')} {item.get('type')}: {item.get('data')}", flush=True)
    return Response(status_code=204)


if __name__ == "__main__":
    import uvicorn

    current_secrets()  # fail at start, not on the first request, when WEBHOOK_SECRET is unset
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8002")))
