"""The consumer portal in a real headless Chromium, against ``dispatcher api`` in its own process and a real
Celery worker: tenant acme's portal, opened by a single-use link, registers an endpoint (offering the registered
event types), shows its secret once, sends a test event the loopback receiver gets signed, rotates the secret,
disables and enables it, replays a dead delivery and deletes it; tenant globex's endpoint, URL and events never
appear, and the page's own session cannot reach them. Then the portal embedded in an iframe of the one site
``portal_frame_ancestors`` allows (refused in any other), and the operator page's "Open portal" button.

Saves ``portal.png`` and ``portal-created.png`` where ``screenshots`` says (DISPATCHER_SCREENSHOTS_DIR=docs/screenshots
refreshes the README's).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher import Dispatcher, Settings, verify

if TYPE_CHECKING:
    from tests.conftest import ApiServer, Receiver, Worker

SCREENSHOT_NAMES = ("portal.png", "portal-created.png")
ORDER_SCHEMA = {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]}


def test_a_tenants_portal_manages_its_own_endpoints_and_never_sees_another_tenants(
    api_server: ApiServer,
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
    for name in SCREENSHOT_NAMES:
        (screenshots / name).unlink(missing_ok=True)
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm() of rotate and delete
    worker_factory(settings)
    up = {"acme": True}
    acme_rx = receiver_factory(reply=lambda n, r: (200, {}, b"ok") if up["acme"] else (500, {}, b"down"))
    globex_rx = receiver_factory()
    dsp.create_tenant("acme", name="Acme Inc")
    dsp.create_tenant("globex", name="Globex")
    dsp.event_types.register(
        "order.paid", description="An order was paid.", schema=ORDER_SCHEMA, example={"order_id": 42}
    )
    theirs = dsp.subscribe(globex_rx.url_for("/globex-secret-hook"), ["*"], tenant="globex")
    their_event = dsp.enqueue("order.paid", {"order_id": 7}, tenant="globex")
    globex_rx.wait_for(1, timeout_s=30)
    never = (theirs.id, "globex-secret-hook", their_event, f"127.0.0.1:{globex_rx.port}", "Globex")

    def shows_nothing_of_globex() -> None:
        html = page.content()
        for value in never:
            assert value not in html, value

    # -- the link opens the portal once ----------------------------------------------------------------
    link = dsp.portal_link("acme", api_server.url).url
    page.goto(link)
    expect(page).to_have_url(api_server.url + "/portal")
    expect(page.locator("#portal-tenant")).to_have_text("Acme Inc")
    expect(page.locator("#no-endpoints")).to_be_visible()
    expect(page.locator("#counters")).to_have_count(0)
    assert page.evaluate("document.cookie") == "", "the portal cookie must be HttpOnly"
    shows_nothing_of_globex()

    # -- register through the form, choosing a registered event type; the secret shown once -------------------
    page.get_by_text("Registered event types (1)").click()
    expect(page.locator("#registered-types")).to_contain_text("An order was paid.")
    expect(page.locator("#registered-types pre")).to_contain_text('"order_id": 42')
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_label("Event types")).to_have_value("order.paid")
    page.get_by_label("Webhook URL").fill("not a url")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#subscribe-error")).to_have_text("The URL must start with http:// or https://")
    assert dsp.list_endpoints(tenant="acme") == []
    page.get_by_label("Webhook URL").fill(acme_rx.url)
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#created")).to_be_visible()
    (mine,) = dsp.list_endpoints(tenant="acme")
    secret = page.locator("#secret").inner_text().strip()
    assert secret == mine.secret and mine.url == acme_rx.url and mine.event_types == ["order.paid"]
    expect(page.locator("#snippet-secret")).to_have_text(secret)
    expect(page.locator("#webhook-help")).to_contain_text("dispatcher.verify(raw_body, headers, secret)")
    page.locator("section.card").first.screenshot(path=str(screenshots / "portal-created.png"))
    card = page.locator(f'article[data-endpoint-id="{mine.id}"]')
    expect(card.locator("[data-state=enabled]")).to_be_visible()
    expect(card).not_to_contain_text(secret)

    # -- a test event reaches the receiver, signed; the card shows the delivery and its attempt ------------------
    card.get_by_role("button", name="Send test event").click()
    expect(page.locator("#flash")).to_contain_text("Test event msg_")
    test_id = page.locator("#flash").inner_text().split()[2]
    (got,) = acme_rx.wait_for(1, timeout_s=30)
    assert verify(got.body, got.headers, secret)["type"] == "webhook.test"
    assert got.headers["webhook-id"] == test_id
    expect(card.locator("tr.delivery[data-state=delivered]")).to_have_count(1, timeout=30_000)
    expect(card.locator(".attempt.ok")).to_contain_text("#1 200")
    shows_nothing_of_globex()

    # -- the page's own session reaches acme only ------------------------------------------------------------
    probe = """([path, tenant]) => fetch(path, {headers: {"X-Dispatcher-Portal": tenant}}).then(r => r.status)"""
    assert page.evaluate(probe, [f"/v1/endpoints/{theirs.id}", "acme"]) == 404
    assert page.evaluate(probe, [f"/v1/events/{their_event}", "acme"]) == 404
    assert page.evaluate(probe, ["/v1/stats", "acme"]) == 403
    assert page.evaluate(probe, ["/v1/endpoints", "globex"]) == 401

    # -- rotate, disable, enable -------------------------------------------------------------------------
    card.get_by_role("button", name="Rotate secret").click()
    expect(page.locator("#flash")).to_contain_text("New signing secret")
    rotated = page.locator("#flash").inner_text().rsplit(" ", 1)[1]
    assert rotated == dsp.get_endpoint(mine.id).secret and rotated != secret
    card.get_by_role("button", name="Disable").click()
    expect(card.locator("[data-state=disabled]")).to_be_visible()
    assert not dsp.get_endpoint(mine.id).enabled
    card.get_by_role("button", name="Enable").click()
    expect(card.locator("[data-state=enabled]")).to_be_visible()

    # -- a dead delivery, replayed ------------------------------------------------------------------------
    up["acme"] = False
    card.get_by_role("button", name="Send test event").click()
    expect(card.locator("tr.delivery[data-state=dead]")).to_have_count(1, timeout=30_000)
    up["acme"] = True
    card.get_by_role("button", name="Replay", exact=True).click()
    expect(page.locator("#flash")).to_have_text("Delivery queued again.")
    expect(card.locator("tr.delivery[data-state=delivered]")).to_have_count(2, timeout=30_000)
    assert verify(acme_rx.requests[-1].body, acme_rx.requests[-1].headers, rotated)["type"] == "webhook.test"
    page.wait_for_timeout(3500)  # one periodic refresh of the list, still acme's only
    shows_nothing_of_globex()
    page.screenshot(path=str(screenshots / "portal.png"), full_page=True)

    # -- the link was single use; delete --------------------------------------------------------------------
    other = page.context.new_page()
    other.goto(link)
    expect(other.locator("#portal-closed")).to_contain_text("expired or was used already")
    other.close()
    card.get_by_role("button", name="Delete").click()
    expect(page.locator("#no-endpoints")).to_be_visible()
    assert dsp.list_endpoints(tenant="acme") == [] and [e.id for e in dsp.list_endpoints()] == [theirs.id]
    assert len(globex_rx.requests) == 1  # globex's receiver got its own event only
    page.get_by_role("button", name="End session").click()
    expect(page.locator("#portal-closed")).to_contain_text("portal session has ended")
    for name in SCREENSHOT_NAMES:
        assert (screenshots / name).stat().st_size > 0, name
    log = api_server.log_path.read_text(errors="replace")
    token = link.rsplit("/", 1)[1]
    assert "GET /portal/whpl_*** " in log and token not in log  # the link is a credential: masked in the log
    assert "POST /portal/whpl_*** " in log


def test_the_portal_embeds_in_the_allowed_site_only_and_the_operator_opens_it(
    api_server_factory: Callable[[Settings], ApiServer],
    api_settings: Settings,
    api_key: str,
    browser_page: object,
    dsp: Dispatcher,
    receiver_factory: Callable[..., Receiver],
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    html = {"src": ""}
    frame_page = (200, {"Content-Type": "text/html"})
    platform = receiver_factory(reply=lambda n, r: (*frame_page, f'<iframe src="{html["src"]}"></iframe>'.encode()))
    stranger = receiver_factory(reply=lambda n, r: (*frame_page, f'<iframe src="{html["src"]}"></iframe>'.encode()))
    server = api_server_factory(
        api_settings.model_copy(update={"portal_frame_ancestors": f"http://127.0.0.1:{platform.port}"})
    )
    dsp.create_tenant("acme", name="Acme Inc")
    dsp.create_tenant("globex")

    # the platform's settings page frames the portal (same site, another origin): it shows and works
    html["src"] = dsp.portal_link("acme", server.url).url
    page.goto(platform.url_for("/settings"))
    portal = page.frame_locator("iframe")
    expect(portal.locator("#portal-tenant")).to_have_text("Acme Inc")
    portal.get_by_label("Webhook URL").fill("http://127.0.0.1:9/framed")
    portal.get_by_role("button", name="Add endpoint").click()
    expect(portal.locator("#created")).to_be_visible()
    assert [e.url for e in dsp.list_endpoints(tenant="acme")] == ["http://127.0.0.1:9/framed"]

    # any other site gets nothing in its frame: the browser refuses to render the portal there
    html["src"] = dsp.portal_link("acme", server.url).url
    page.goto(stranger.url_for("/settings"))
    page.wait_for_timeout(1000)
    frame = next(f for f in page.frames if f != page.main_frame)
    assert frame.locator("#portal-tenant").count() == 0 and frame.url.startswith("chrome-error:"), frame.url

    # the operator's page opens any tenant's portal in a new tab
    page.goto(server.url + "/")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Log in").click()
    with page.context.expect_page() as opened:
        page.locator('[data-portal-tenant="globex"]').click()
    tab = opened.value
    tab.wait_for_load_state()
    expect(tab.locator("#portal-tenant")).to_have_text("globex")
    expect(tab.locator("#no-endpoints")).to_be_visible()
    assert re.search(r"/portal$", tab.url)
    expect(page.locator("#counters")).to_be_visible()  # the operator's page is still logged in
