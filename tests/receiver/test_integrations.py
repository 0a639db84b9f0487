"""The Flask, FastAPI/Starlette and Django receiver helpers: raw body in, event out, failures answered 400/401,
repeats answered 200 once claimed in Redis, and the claim released when the view fails."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dispatcher.receiver.verify import SeenIds
from dispatcher.signing import generate_secret, secret_key, webhook_headers

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def importable(*names: str) -> bool:
    """Whether every module named imports (a missing or broken install skips that framework's tests)."""
    try:
        for name in names:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


HAS_FLASK = importable("flask")
HAS_FASTAPI = importable("fastapi", "fastapi.testclient")
HAS_STARLETTE = importable("starlette", "starlette.testclient")
HAS_DJANGO = importable("django", "django.test")
HAS_ASGIREF = importable("asgiref")

SECRET = generate_secret()
OTHER_SECRET = generate_secret()
# deliberately not in the canonical form: extra spaces, keys out of order
BODY = b'{"type": "order.paid",  "id": "msg_int_1", "data": {"total": "9.99", "order": 42}}'
EVENT = json.loads(BODY)
REENCODED = json.dumps(EVENT, sort_keys=True, separators=(",", ":")).encode()


def headers_for(body: bytes = BODY, secret: str = SECRET, msg_id: str = "msg_int_1") -> dict[str, str]:
    return webhook_headers([secret_key(secret)], msg_id, int(time.time()), body)


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


def test_reencoded_body_really_differs() -> None:
    assert REENCODED != BODY and json.loads(REENCODED) == EVENT


@pytest.fixture
def seen(redis_url: str, prefix: str) -> Iterator[SeenIds]:
    client = redis.Redis.from_url(redis_url)
    yield SeenIds(client, prefix=prefix + "seen:", ttl_s=60)
    client.close()


# -- Flask -------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_FLASK, reason="flask is not installed")
class TestFlask:
    def make_app(self, seen: SeenIds | None = None, fail: bool = False, status: int = 200) -> tuple[Any, list[Any]]:
        from flask import Flask

        from dispatcher.receiver.integrations.flask import webhook_required

        app = Flask(__name__)
        received: list[Any] = []

        @app.post("/hooks/<tenant>")
        @webhook_required(lambda: [OTHER_SECRET, SECRET], seen=seen)
        def hooks(event: dict[str, Any], tenant: str) -> tuple[dict[str, Any], int]:
            received.append((tenant, event))
            if fail:
                raise RuntimeError("handler failed")
            return {"ok": True, "tenant": tenant}, status

        return app, received

    def test_accepts_signed_raw_body(self) -> None:
        app, received = self.make_app()
        response = app.test_client().post("/hooks/acme", data=BODY, headers=headers_for())
        assert response.status_code == 200
        assert response.get_json() == {"ok": True, "tenant": "acme"}
        assert received == [("acme", EVENT)]

    def test_rejects_reserialised_body(self) -> None:
        app, received = self.make_app()
        response = app.test_client().post("/hooks/acme", data=REENCODED, headers=headers_for())
        assert response.status_code == 401
        assert response.get_json()["error"] == "InvalidSignature"
        assert received == []

    def test_rejects_bad_signature(self) -> None:
        app, received = self.make_app()
        response = app.test_client().post("/hooks/acme", data=BODY, headers=headers_for(secret=generate_secret()))
        assert response.status_code == 401
        assert received == []

    def test_missing_header_and_bad_json_are_400(self) -> None:
        app, received = self.make_app()
        client = app.test_client()
        response = client.post("/hooks/acme", data=BODY, headers=without(headers_for(), "webhook-signature"))
        assert response.status_code == 400
        assert response.get_json()["error"] == "MissingHeader"
        response = client.post("/hooks/acme", data=b"not json", headers=headers_for(b"not json"))
        assert response.status_code == 400
        assert response.get_json()["error"] == "InvalidPayload"
        assert received == []

    def test_old_timestamp_is_401(self) -> None:
        app, _ = self.make_app()
        headers = webhook_headers([secret_key(SECRET)], "msg_old", int(time.time()) - 3600, BODY)
        response = app.test_client().post("/hooks/acme", data=BODY, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"] == "TimestampTooOld"

    def test_repeat_is_answered_without_calling_the_view(self, seen: SeenIds) -> None:
        app, received = self.make_app(seen)
        client = app.test_client()
        headers = headers_for()
        assert client.post("/hooks/acme", data=BODY, headers=headers).status_code == 200
        again = client.post("/hooks/acme", data=BODY, headers=headers_for())
        assert again.status_code == 200
        assert again.get_json() == {"status": "already processed"}
        assert len(received) == 1

    def test_failed_view_releases_the_claim(self, seen: SeenIds) -> None:
        app, received = self.make_app(seen, fail=True)
        assert app.test_client().post("/hooks/acme", data=BODY, headers=headers_for()).status_code == 500
        assert not seen.seen("msg_int_1")
        app2, received2 = self.make_app(seen)
        assert app2.test_client().post("/hooks/acme", data=BODY, headers=headers_for()).status_code == 200
        assert len(received) == 1 and len(received2) == 1

    def test_non_2xx_answer_releases_the_claim(self, seen: SeenIds) -> None:
        app, _ = self.make_app(seen, status=503)
        assert app.test_client().post("/hooks/acme", data=BODY, headers=headers_for()).status_code == 503
        assert not seen.seen("msg_int_1")

    @pytest.mark.skipif(not HAS_ASGIREF, reason="flask[async] needs asgiref")
    def test_async_view(self) -> None:
        from flask import Flask

        from dispatcher.receiver.integrations.flask import webhook_required

        app = Flask(__name__)

        @app.post("/hooks")
        @webhook_required(SECRET)
        async def hooks(event: dict[str, Any]) -> dict[str, Any]:
            return {"type": event["type"]}

        client = app.test_client()
        assert client.post("/hooks", data=BODY, headers=headers_for()).get_json() == {"type": "order.paid"}
        assert client.post("/hooks", data=REENCODED, headers=headers_for()).status_code == 401


# -- FastAPI and Starlette -----------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_FASTAPI, reason="fastapi or httpx is not installed")
class TestFastAPI:
    def make_app(self, seen: SeenIds | None = None, fail: bool = False) -> tuple[Any, list[Any]]:
        from fastapi import Depends, FastAPI

        from dispatcher.receiver.integrations.fastapi import WebhookVerifier

        app = FastAPI()
        verifier = WebhookVerifier([OTHER_SECRET, SECRET], seen=seen)
        received: list[Any] = []

        @app.post("/hooks")
        async def hooks(event: dict = Depends(verifier)) -> dict[str, Any]:  # noqa: B008
            received.append(event)
            if fail:
                raise RuntimeError("handler failed")
            return {"ok": True, "type": event["type"]}

        return app, received

    def client(self, app: Any) -> Any:
        from fastapi.testclient import TestClient

        return TestClient(app, raise_server_exceptions=False)

    def test_accepts_signed_raw_body(self) -> None:
        app, received = self.make_app()
        response = self.client(app).post("/hooks", content=BODY, headers=headers_for())
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True, "type": "order.paid"}
        assert received == [EVENT]

    def test_rejects_reserialised_body(self) -> None:
        app, received = self.make_app()
        response = self.client(app).post("/hooks", content=REENCODED, headers=headers_for())
        assert response.status_code == 401
        assert response.json()["detail"].startswith("InvalidSignature")
        assert received == []

    def test_rejects_bad_signature(self) -> None:
        app, received = self.make_app()
        response = self.client(app).post("/hooks", content=BODY, headers=headers_for(secret=generate_secret()))
        assert response.status_code == 401
        assert received == []

    def test_missing_header_is_400(self) -> None:
        app, received = self.make_app()
        response = self.client(app).post("/hooks", content=BODY, headers=without(headers_for(), "webhook-id"))
        assert response.status_code == 400
        assert response.json()["detail"].startswith("MissingHeader")
        assert received == []

    def test_svix_headers(self) -> None:
        app, received = self.make_app()
        headers = {k.replace("webhook-", "svix-"): v for k, v in headers_for().items()}
        assert self.client(app).post("/hooks", content=BODY, headers=headers).status_code == 200
        assert received == [EVENT]

    def test_repeat_and_release(self, seen: SeenIds) -> None:
        app, received = self.make_app(seen, fail=True)
        client = self.client(app)
        assert client.post("/hooks", content=BODY, headers=headers_for()).status_code == 500
        assert not seen.seen("msg_int_1")  # released: the sender's retry will be processed
        app2, received2 = self.make_app(seen)
        client2 = self.client(app2)
        assert client2.post("/hooks", content=BODY, headers=headers_for()).status_code == 200
        again = client2.post("/hooks", content=BODY, headers=headers_for())
        assert again.status_code == 200
        assert again.json() == {"detail": "already processed"}
        assert len(received) == 1 and len(received2) == 1

    @pytest.mark.skipif(not HAS_STARLETTE, reason="starlette is not installed")
    def test_plain_starlette(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route
        from starlette.testclient import TestClient

        from dispatcher.receiver.integrations.fastapi import WebhookVerifier

        verifier = WebhookVerifier(SECRET)

        async def hooks(request: Request) -> JSONResponse:
            event = await verifier.verify_request(request)
            return JSONResponse({"type": event["type"]})

        client = TestClient(Starlette(routes=[Route("/hooks", hooks, methods=["POST"])]))
        assert client.post("/hooks", content=BODY, headers=headers_for()).json() == {"type": "order.paid"}
        bad = client.post("/hooks", content=REENCODED, headers=headers_for())
        assert bad.status_code == 401
        assert "InvalidSignature" in bad.text


# -- Django --------------------------------------------------------------------------------------------------
urlpatterns: list[Any] = []  # filled in by the django fixture; this module is the ROOT_URLCONF

if HAS_DJANGO:
    import django
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only-not-secret",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"],
            INSTALLED_APPS=[],
            DATABASES={},
            USE_TZ=True,
        )
        django.setup()


@pytest.fixture
def django_views() -> Iterator[Callable[..., tuple[Any, list[Any]]]]:
    """``make(seen=None, fail=False, status=200)``: route /hooks/<tenant> to a decorated view; returns a client."""
    from django.test import Client, override_settings
    from django.urls import clear_url_caches, path

    from dispatcher.receiver.integrations.django import webhook_required

    def make(seen: SeenIds | None = None, fail: bool = False, status: int = 200) -> tuple[Any, list[Any]]:
        from django.http import HttpRequest, JsonResponse

        received: list[Any] = []

        @webhook_required([OTHER_SECRET, SECRET], seen=seen)
        def hooks(request: HttpRequest, event: dict[str, Any], tenant: str) -> JsonResponse:
            received.append((tenant, event))
            if fail:
                raise RuntimeError("handler failed")
            return JsonResponse({"ok": True, "tenant": tenant}, status=status)

        @webhook_required(SECRET)
        async def async_hooks(request: HttpRequest, event: dict[str, Any]) -> JsonResponse:
            received.append(("async", event))
            return JsonResponse({"type": event["type"]})

        urlpatterns[:] = [path("hooks/<str:tenant>", hooks), path("async-hooks", async_hooks)]
        clear_url_caches()
        return Client(enforce_csrf_checks=True, raise_request_exception=False), received

    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"]):
        yield make
    urlpatterns[:] = []
    clear_url_caches()


def django_post(client: Any, url: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(url, data=body, content_type="application/json", headers=without(headers, "content-type"))


@pytest.mark.skipif(not HAS_DJANGO, reason="django is not installed")
class TestDjango:
    def test_accepts_signed_raw_body(self, django_views: Callable[..., tuple[Any, list[Any]]]) -> None:
        client, received = django_views()
        response = django_post(client, "/hooks/acme", BODY, headers_for())
        assert response.status_code == 200, response.content
        assert response.json() == {"ok": True, "tenant": "acme"}
        assert received == [("acme", EVENT)]

    def test_rejects_reserialised_body(self, django_views: Callable[..., tuple[Any, list[Any]]]) -> None:
        client, received = django_views()
        response = django_post(client, "/hooks/acme", REENCODED, headers_for())
        assert response.status_code == 401
        assert response.json()["error"] == "InvalidSignature"
        assert received == []

    def test_rejects_bad_signature(self, django_views: Callable[..., tuple[Any, list[Any]]]) -> None:
        client, received = django_views()
        response = django_post(client, "/hooks/acme", BODY, headers_for(secret=generate_secret()))
        assert response.status_code == 401
        assert received == []

    def test_missing_header_is_400(self, django_views: Callable[..., tuple[Any, list[Any]]]) -> None:
        client, received = django_views()
        response = django_post(client, "/hooks/acme", BODY, without(headers_for(), "webhook-timestamp"))
        assert response.status_code == 400
        assert response.json()["error"] == "MissingHeader"
        assert received == []

    def test_repeat_and_release(self, django_views: Callable[..., tuple[Any, list[Any]]], seen: SeenIds) -> None:
        client, received = django_views(seen, fail=True)
        assert django_post(client, "/hooks/acme", BODY, headers_for()).status_code == 500
        assert not seen.seen("msg_int_1")
        client, received2 = django_views(seen)
        assert django_post(client, "/hooks/acme", BODY, headers_for()).status_code == 200
        again = django_post(client, "/hooks/acme", BODY, headers_for())
        assert again.status_code == 200
        assert again.json() == {"status": "already processed"}
        assert len(received) == 1 and len(received2) == 1

    def test_non_2xx_answer_releases_the_claim(
        self, django_views: Callable[..., tuple[Any, list[Any]]], seen: SeenIds
    ) -> None:
        client, _ = django_views(seen, status=503)
        assert django_post(client, "/hooks/acme", BODY, headers_for()).status_code == 503
        assert not seen.seen("msg_int_1")

    def test_async_view(self, django_views: Callable[..., tuple[Any, list[Any]]]) -> None:
        client, received = django_views()
        response = django_post(client, "/async-hooks", BODY, headers_for())
        assert response.status_code == 200, response.content
        assert response.json() == {"type": "order.paid"}
        assert django_post(client, "/async-hooks", REENCODED, headers_for()).status_code == 401
        assert received == [("async", EVENT)]


# -- every framework: the secret forms verify() takes, and each VerificationError answered with its status ------
UNPADDED_KEY = b"23 bytes of HMAC key!!!"  # 23 bytes: its base64 ends in "="
UNPADDED = base64.b64encode(UNPADDED_KEY).decode().rstrip("=")
BAD_SECRET = "whsec_c2VjcmV0-not+base64!"


def signed_with(keys: list[bytes], body: bytes = BODY, ts_shift: int = 0) -> dict[str, str]:
    return webhook_headers(keys, "msg_case", int(time.time()) + ts_shift, body)


# name -> (secret given to the helper, body, headers (signed when the test runs: a timestamp taken at import
# goes stale once the suite has run past the 300 s tolerance), expected status, expected error class or None)
HELPER_CASES: dict[str, tuple[Any, bytes, Callable[[], dict[str, str]], int, str | None]] = {
    "unpadded secret with whsec_": ("whsec_" + UNPADDED, BODY, lambda: signed_with([UNPADDED_KEY]), 200, None),
    "unpadded secret without whsec_": (UNPADDED, BODY, lambda: signed_with([UNPADDED_KEY]), 200, None),
    "raw key bytes": (UNPADDED_KEY, BODY, lambda: signed_with([UNPADDED_KEY]), 200, None),
    "several signatures, one matches": (
        UNPADDED,
        BODY,
        lambda: signed_with([secret_key(OTHER_SECRET), secret_key(generate_secret()), UNPADDED_KEY]),
        200,
        None,
    ),
    "several secrets, one matches": ([SECRET, UNPADDED], BODY, lambda: signed_with([UNPADDED_KEY]), 200, None),
    "bad secret": (BAD_SECRET, BODY, lambda: signed_with([UNPADDED_KEY]), 500, "InvalidSecret"),
    "no secret": ([], BODY, lambda: signed_with([UNPADDED_KEY]), 500, "InvalidSecret"),
    "missing header": (
        UNPADDED,
        BODY,
        lambda: without(signed_with([UNPADDED_KEY]), "webhook-id"),
        400,
        "MissingHeader",
    ),
    "malformed timestamp": (
        UNPADDED,
        BODY,
        lambda: {**signed_with([UNPADDED_KEY]), "webhook-timestamp": "soon"},
        400,
        "MalformedHeader",
    ),
    "wrong secret": (SECRET, BODY, lambda: signed_with([UNPADDED_KEY]), 401, "InvalidSignature"),
    "too old": (UNPADDED, BODY, lambda: signed_with([UNPADDED_KEY], ts_shift=-3600), 401, "TimestampTooOld"),
    "too new": (UNPADDED, BODY, lambda: signed_with([UNPADDED_KEY], ts_shift=3600), 401, "TimestampTooNew"),
    "not JSON": (UNPADDED, b"not json", lambda: signed_with([UNPADDED_KEY], b"not json"), 400, "InvalidPayload"),
}


def test_helper_cases_cover_every_verification_error() -> None:
    from dispatcher import errors

    raised_by_a_request = {
        name
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.VerificationError) and cls is not errors.VerificationError
    } - {"AlreadyProcessed", "RawBodyRequired"}  # a repeat is tested with seen=; the helpers always pass bytes
    assert {case[4] for case in HELPER_CASES.values()} - {None} == raised_by_a_request
    for case in HELPER_CASES.values():
        if case[4] is not None:
            assert getattr(errors, case[4]).http_status == case[3]


def answer_flask(secret: Any, body: bytes, headers: dict[str, str]) -> tuple[int, str | None, str]:
    from flask import Flask

    from dispatcher.receiver.integrations.flask import webhook_required

    app = Flask(__name__)

    @app.post("/hooks")
    @webhook_required(secret)
    def hooks(event: dict[str, Any]) -> dict[str, Any]:
        return {"type": event["type"]}

    response = app.test_client().post("/hooks", data=body, headers=headers)
    return response.status_code, response.get_json().get("error"), response.get_data(as_text=True)


def answer_fastapi(secret: Any, body: bytes, headers: dict[str, str]) -> tuple[int, str | None, str]:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from dispatcher.receiver.integrations.fastapi import WebhookVerifier

    app = FastAPI()
    verifier = WebhookVerifier(secret)

    @app.post("/hooks")
    async def hooks(event: dict = Depends(verifier)) -> dict[str, Any]:  # noqa: B008
        return {"type": event["type"]}

    response = TestClient(app, raise_server_exceptions=False).post("/hooks", content=body, headers=headers)
    detail = response.json().get("detail")
    return response.status_code, detail.split(":")[0] if detail else None, response.text


def answer_django(secret: Any, body: bytes, headers: dict[str, str]) -> tuple[int, str | None, str]:
    from django.http import HttpRequest, JsonResponse
    from django.test import Client, override_settings
    from django.urls import clear_url_caches, path

    from dispatcher.receiver.integrations.django import webhook_required

    @webhook_required(secret)
    def hooks(request: HttpRequest, event: dict[str, Any]) -> JsonResponse:
        return JsonResponse({"type": event["type"]})

    urlpatterns[:] = [path("hooks", hooks)]
    clear_url_caches()
    try:
        with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"]):
            client = Client(enforce_csrf_checks=True, raise_request_exception=False)
            response = django_post(client, "/hooks", body, headers)
    finally:
        urlpatterns[:] = []
        clear_url_caches()
    return response.status_code, response.json().get("error"), response.content.decode()


FRAMEWORKS = [
    pytest.param(answer_flask, marks=pytest.mark.skipif(not HAS_FLASK, reason="flask is not installed"), id="flask"),
    pytest.param(
        answer_fastapi, marks=pytest.mark.skipif(not HAS_FASTAPI, reason="fastapi is not installed"), id="fastapi"
    ),
    pytest.param(
        answer_django, marks=pytest.mark.skipif(not HAS_DJANGO, reason="django is not installed"), id="django"
    ),
]


@pytest.mark.parametrize("answer", FRAMEWORKS)
@pytest.mark.parametrize("case", list(HELPER_CASES))
def test_helpers_answer_like_verify(answer: Callable[..., tuple[int, str | None, str]], case: str) -> None:
    secret, body, headers, status, error = HELPER_CASES[case]
    got_status, got_error, text = answer(secret, body, headers())
    assert (got_status, got_error) == (status, error), text
    if error is None:
        assert json.loads(text) == {"type": "order.paid"}
    assert "c2VjcmV0" not in text  # a bad secret's message never repeats the secret


BLOCK_FRAMEWORKS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("flask", "django"):
            raise ImportError(f"{name} is blocked")
        return None
sys.meta_path.insert(0, Block())
"""


def test_core_package_works_without_the_frameworks() -> None:

    code = BLOCK_FRAMEWORKS + (
        "import dispatcher, dispatcher.integrations\n"
        "from dispatcher.verify import verify\n"
        "for name in ('flask', 'django'):\n"
        "    try:\n"
        "        __import__('dispatcher.integrations.' + name)\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
        "print(callable(dispatcher.verify))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "needs Flask: pip install flask" in result.stdout
    assert "needs Django: pip install django" in result.stdout
    assert result.stdout.strip().endswith("True")


# -- the runnable examples -----------------------------------------------------------------------------------
@pytest.fixture
def examples(repo_root: Path) -> Path:
    return repo_root / "examples"


def load_example(name: str, monkeypatch: pytest.MonkeyPatch, examples: Path) -> Any:
    monkeypatch.setenv("WEBHOOK_SECRET", f"{OTHER_SECRET} {SECRET}")
    monkeypatch.delenv("WEBHOOK_REDIS_URL", raising=False)
    spec = importlib.util.spec_from_file_location(f"example_{name}", examples / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not HAS_FLASK, reason="flask is not installed")
def test_flask_example(monkeypatch: pytest.MonkeyPatch, examples: Path) -> None:
    client = load_example("flask_receiver", monkeypatch, examples).app.test_client()
    assert client.post("/hooks", data=BODY, headers=headers_for()).status_code == 204
    assert client.post("/hooks", data=REENCODED, headers=headers_for()).status_code == 401


@pytest.mark.skipif(not HAS_FASTAPI, reason="fastapi or httpx is not installed")
def test_fastapi_example(monkeypatch: pytest.MonkeyPatch, examples: Path) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(load_example("fastapi_receiver", monkeypatch, examples).app)
    assert client.post("/hooks", content=BODY, headers=headers_for()).status_code == 204
    assert client.post("/hooks", content=REENCODED, headers=headers_for()).status_code == 401


@pytest.mark.skipif(not HAS_DJANGO, reason="django is not installed")
def test_django_example_passes_checks(examples: Path) -> None:

    env = {**os.environ, "WEBHOOK_SECRET": SECRET}
    env.pop("WEBHOOK_REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, str(examples / "django_receiver.py"), "check"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
