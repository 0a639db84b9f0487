"""A single-file Django webhook receiver that verifies every request with ``dispatcher.integrations.django``.

    WEBHOOK_SECRET=whsec_... python examples/django_receiver.py         # http://127.0.0.1:8003/hooks
    WEBHOOK_SECRET=whsec_... python examples/django_receiver.py runserver 127.0.0.1:9000

``WEBHOOK_SECRET`` holds the endpoint's secret (several, space-separated, while rotating). With
``WEBHOOK_REDIS_URL`` set, a webhook-id already handled is answered 200 without handling it again.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import django
import redis
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"],
    INSTALLED_APPS=[],
    DATABASES={},
)
django.setup()

from django.core.management import execute_from_command_line  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from dispatcher.receiver.integrations.django import webhook_required  # noqa: E402
from dispatcher.receiver.verify import SeenIds  # noqa: E402


def current_secrets() -> list[str]:
    return os.environ["WEBHOOK_SECRET"].split()


redis_url = os.environ.get("WEBHOOK_REDIS_URL")
seen = SeenIds(redis.Redis.from_url(redis_url), ttl_s=2 * 24 * 3600) if redis_url else None


@webhook_required(current_secrets, seen=seen)  # also CSRF-exempt
def hooks(request: HttpRequest, event: dict[str, Any] | list[dict[str, Any]]) -> HttpResponse:
    for item in event if isinstance(event, list) else [event]:  # a batched endpoint sends a list
        print(f"{item.get('id')} {item.get('type')}: {item.get('data')}", flush=True)
    return HttpResponse(status=204)


urlpatterns = [path("hooks", hooks)]


if __name__ == "__main__":
    current_secrets()  # fail at start, not on the first request, when WEBHOOK_SECRET is unset
    args = sys.argv[1:] or ["runserver", "--noreload", f"127.0.0.1:{os.environ.get('PORT', '8003')}"]
    execute_from_command_line([sys.argv[0], *args])
