"""The web page in a real headless Chromium, against the API under uvicorn and a real Celery worker.

Logs in, registers a receiver through the form, reads the secret shown once, sends a test event and
watches it arrive (signed) and turn "delivered" on the page; dead-letters one and replays it with the
page's button. Saves a screenshot of each view: into the test's temporary folder, or into the folder named by
DISPATCHER_SCREENSHOTS_DIR (relative to the repository root), which is how docs/screenshots/ is refreshed:

    DISPATCHER_SCREENSHOTS_DIR=docs/screenshots python -m pytest tests/api/test_web.py tests/api/test_web_browser.py

The chat-robot and poll kinds of the form are in test_web_browser.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from standardwebhooks.webhooks import Webhook

from dispatcher import Dispatcher, Settings
from dispatcher.api.app import create_app
from dispatcher.api.web import endpoint_view
from dispatcher.models import Attempt, Delivery, DeliveryState

if TYPE_CHECKING:
    from tests.conftest import Receiver, Worker

SCREENSHOT_NAMES = ("login.png", "endpoint-created.png", "dead-letter.png", "endpoints.png")
KEY = "web-test-key-0123456789abcdef"


@pytest.fixture
def api_keys() -> tuple[str, ...]:
    return (KEY,)


class ServerThread:
    """uvicorn serving an app on a free loopback port, in a background thread."""

    def __init__(self, app: object, wait_until: Callable[..., Any]) -> None:
        self.wait_until = wait_until
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.wait_until(lambda: self.server.started or not self.thread.is_alive(), 15, what="uvicorn started")
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def served(api_settings: Settings, dsp: Dispatcher, wait_until: Callable[..., Any]) -> Iterator[ServerThread]:
    app = create_app(api_settings, dsp)
    with ServerThread(app, wait_until) as server:
        yield server


def test_register_send_test_event_and_replay_from_the_page(
    served: ServerThread,
    browser_page: object,
    dsp: Dispatcher,
    settings: Settings,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    screenshots: Path,
    wait_until: Callable[..., Any],
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    for name in SCREENSHOT_NAMES:  # so the check at the end sees this run's files
        (screenshots / name).unlink(missing_ok=True)
    worker_factory(settings)
    receiver = receiver_factory()
    healthy = {"up": False}
    flaky = receiver_factory(reply=lambda n, r: (200, {}, b"ok") if healthy["up"] else (500, {}, b"not yet"))

    # -- login -----------------------------------------------------------------------------------
    page.goto(served.url + "/")
    expect(page.get_by_label("API key")).to_be_visible()
    page.screenshot(path=str(screenshots / "login.png"))
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text("invalid API key")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_label("Webhook URL")).to_be_visible()
    assert page.evaluate("document.cookie") == "", "the session cookie must be HttpOnly"
    # a write without the page's CSRF header is refused even with the cookie
    status = page.evaluate(
        """() => fetch('/v1/endpoints', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                          body: JSON.stringify({url: 'https://example.com/h'})}).then(r => r.status)"""
    )
    assert status == 403
    assert dsp.list_endpoints() == []

    # -- register through the form: the secret is shown once ------------------------------------------
    page.get_by_label("Webhook URL").fill(receiver.url)
    page.get_by_label("Event types").fill("order.*, user.created")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#created")).to_be_visible()
    secret = page.locator("#secret").inner_text().strip()
    (endpoint,) = dsp.list_endpoints()
    assert secret == endpoint.secret and secret.startswith("whsec_")
    assert endpoint.url == receiver.url and endpoint.event_types == ["order.*", "user.created"]
    expect(page.locator("#snippet-secret")).to_have_text(secret)
    expect(page.locator("#webhook-help pre")).to_contain_text("Webhook(")
    expect(page.locator("#poll-help")).to_be_hidden()
    card = page.locator(f'article[data-endpoint-id="{endpoint.id}"]')
    expect(card).to_contain_text(receiver.url)
    expect(card.locator("[data-state=enabled]")).to_be_visible()
    expect(card).not_to_contain_text(secret)  # listings are masked
    expect(page.locator("#c-workers")).to_have_text("1", timeout=30_000)
    page.screenshot(path=str(screenshots / "endpoint-created.png"), full_page=True)

    # -- send a test event: the receiver gets it signed, the page shows it delivered ---------------------
    sent_minute = time.time() // 60  # the counter is this minute's: a minute that rolled over restarts it at 0
    card.get_by_role("button", name="Send test event").click()
    expect(page.locator("#flash")).to_contain_text("Test event msg_")
    (req,) = receiver.wait_for(1, timeout_s=30)
    assert Webhook(secret).verify(req.body, req.headers)["type"] == "webhook.test"
    expect(card.locator("tr.delivery[data-state=delivered]")).to_have_count(1, timeout=30_000)
    expect(card.locator(".attempt.ok")).to_contain_text("#1 200")

    def counted() -> bool:
        return int(page.locator("#c-delivered").inner_text() or 0) >= 1 or time.time() // 60 != sent_minute

    wait_until(counted, 30, 0.2, what="delivered counter")

    # -- a dead delivery, replayed with the page's button ---------------------------------------------
    failing_ep = dsp.subscribe(flaky.url, ["order.*"], retry_schedule=[])
    page.reload()
    failing = page.locator(f'article[data-endpoint-id="{failing_ep.id}"]')
    failing.get_by_role("button", name="Send test event").click()
    expect(failing.locator("tr.delivery[data-state=dead]")).to_have_count(1, timeout=30_000)
    expect(failing.locator(".status")).to_contain_text("failing since")
    expect(failing.get_by_role("button", name="Replay 1 dead")).to_be_visible()
    page.screenshot(path=str(screenshots / "dead-letter.png"), full_page=True)
    healthy["up"] = True
    failing.get_by_role("button", name="Replay", exact=True).click()
    expect(page.locator("#flash")).to_have_text("Delivery queued again.")
    expect(failing.locator("tr.delivery[data-state=delivered]")).to_have_count(1, timeout=30_000)
    expect(failing.locator(".status")).not_to_contain_text("failing since")
    assert flaky.count() == 2
    expect(page.locator("#c-dead")).to_have_text("0", timeout=30_000)
    page.screenshot(path=str(screenshots / "endpoints.png"), full_page=True)

    # -- log out -------------------------------------------------------------------------------------
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    for name in SCREENSHOT_NAMES:
        assert (screenshots / name).stat().st_size > 0, name


# -- without a browser --------------------------------------------------------------------------------
def test_page_shows_the_login_form_until_logged_in_and_escapes_what_it_renders(anon: Any, dsp: Dispatcher) -> None:
    client = anon  # a TestClient of the app, without credentials
    dsp.subscribe("https://example.com/<b>hook</b>", ["*"], description='<script>alert("x")</script>')
    page = client.get("/")
    assert page.status_code == 200 and 'id="login-form"' in page.text and "example.com" not in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.post("/web/login", json={"api_key": KEY}, headers={"X-Dispatcher-CSRF": "1"}).status_code == 204
    page = client.get("/")
    assert 'id="subscribe-form"' in page.text and "Webhook URL" in page.text
    fragment = client.get("/web/endpoints").text
    assert "&lt;script&gt;" in fragment and "<script>alert" not in fragment
    assert "%3Cb%3Ehook%3C/b%3E" in fragment and "<b>hook" not in fragment  # saved percent-encoded, as sent


def _attempt(n: int, at: float, status: int | None, error: str | None = None) -> Attempt:
    return Attempt(n=n, at=at, status=status, error=error, latency_ms=3.0)


def test_failing_since_is_the_first_failure_after_the_last_success(dsp: Dispatcher) -> None:
    ep = dsp.subscribe("https://example.com/h", ["*"])
    old_ok = Delivery(
        id="d1", event_id="e1", endpoint_id=ep.id, state=DeliveryState.DELIVERED, attempts=[_attempt(1, 100, 200)]
    )
    failing = Delivery(
        id="d2",
        event_id="e2",
        endpoint_id=ep.id,
        state=DeliveryState.RETRYING,
        attempts=[_attempt(1, 110, 500), _attempt(2, 130, None, "timeout")],
    )
    newer_fail = Delivery(
        id="d3", event_id="e3", endpoint_id=ep.id, state=DeliveryState.DEAD, attempts=[_attempt(1, 120, 503)]
    )
    view = endpoint_view(ep, [newer_fail, failing, old_ok], dead_letters=1)
    assert view.failing_since == 110
    assert view.last_attempt is not None and view.last_attempt.at == 130
    recovered = Delivery(
        id="d4", event_id="e4", endpoint_id=ep.id, state=DeliveryState.DELIVERED, attempts=[_attempt(1, 140, 204)]
    )
    assert endpoint_view(ep, [recovered, newer_fail, failing, old_ok], 0).failing_since is None
    assert endpoint_view(ep, [], 0).last_attempt is None
