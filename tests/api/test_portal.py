"""The consumer portal without a browser: the link (operator only, single use, expiring, digest only), the
tenant-scoped session it opens, what that session may reach, the framing headers and the cookie's flags.
The portal in a real Chromium is in test_portal_browser.py."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import ValidationError

from dispatcher import Dispatcher, Settings
from dispatcher.errors import InvalidInput, TenantNotFound
from dispatcher.store.keys import Keys

CSRF = {"X-Dispatcher-CSRF": "1"}


def portal_keys(raw_redis: redis.Redis, store_keys: Keys) -> list[bytes]:
    return sorted(raw_redis.scan_iter(match=f"{store_keys.prefix}portal:*", count=1000))


def link_path(url: str) -> str:
    return "/portal/" + url.split("/portal/", 1)[1]


@pytest.fixture
def two_tenants(dsp: Dispatcher) -> dict[str, str]:
    """acme and globex, an endpoint each (ids by tenant)."""
    found = {}
    for tenant in ("acme", "globex"):
        dsp.create_tenant(tenant, name=tenant.title())
        found[tenant] = dsp.subscribe(f"http://127.0.0.1:9/{tenant}-hook", ["*"], tenant=tenant).id
    return found


@pytest.fixture
def open_portal(api: TestClient, api_factory: Callable[..., TestClient]) -> Callable[[str], TestClient]:
    """``open_portal(tenant)``: a browser-like client (no credentials) that opened a fresh link of the tenant."""

    def open_(tenant: str) -> TestClient:
        link = api.post(f"/v1/tenants/{tenant}/portal-link").json()["url"]
        browser = api_factory(auth=False)
        opened = browser.post(link_path(link), follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/portal", opened.text
        return browser

    return open_


def test_a_link_is_made_by_the_operator_only_and_stores_only_its_digest(
    api: TestClient,
    api_factory: Callable[..., TestClient],
    dsp: Dispatcher,
    two_tenants: dict[str, str],
    raw_redis: redis.Redis,
    store_keys: Keys,
) -> None:
    made = api.post("/v1/tenants/acme/portal-link")
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["tenant"] == "acme" and body["url"].startswith("http://testserver/portal/whpl_")
    assert time.time() + 590 < body["expires_at"] <= time.time() + 600
    token = body["url"].rsplit("/", 1)[1]
    (key,) = portal_keys(raw_redis, store_keys)
    assert token.encode() not in key and raw_redis.get(key) == b"acme"  # the digest is the key; no token stored
    assert 590 < raw_redis.ttl(key) <= 600

    missing = api.post("/v1/tenants/nope/portal-link")
    assert missing.status_code == 404 and "no tenant 'nope'" in missing.json()["error"]["message"]
    tenant_token = api_factory(headers={"Authorization": f"Bearer {dsp.issue_tenant_token('acme')}"})
    assert tenant_token.post("/v1/tenants/acme/portal-link").status_code == 403
    assert portal_keys(raw_redis, store_keys) == [key]  # the refused requests wrote nothing

    public = api_factory(public_url="https://hooks.example.com/").post("/v1/tenants/acme/portal-link").json()
    assert public["url"].startswith("https://hooks.example.com/portal/whpl_")


@pytest.fixture
def acme_link(api: TestClient, two_tenants: dict[str, str]) -> str:
    """The path of a fresh portal link of acme (of ``two_tenants``)."""
    return link_path(api.post("/v1/tenants/acme/portal-link").json()["url"])


def test_a_link_opens_the_portal_once(
    acme_link: str,
    api_key: str,
    api_factory: Callable[..., TestClient],
    two_tenants: dict[str, str],
    raw_redis: redis.Redis,
    store_keys: Keys,
) -> None:
    link = acme_link
    first = api_factory(auth=False)
    opened = first.post(link, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/portal"
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith("dispatcher_portal=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert "frame-ancestors 'self'" in opened.headers["content-security-policy"]
    (session,) = portal_keys(raw_redis, store_keys)
    assert b":portal:session:" in session and raw_redis.get(session) == b"acme"

    again = api_factory(auth=False).post(link, follow_redirects=False)  # the same link, another browser
    assert again.status_code == 410 and "set-cookie" not in again.headers
    assert "expired or was used already" in again.text
    assert portal_keys(raw_redis, store_keys) == [session]  # nothing written
    for bad in ("whpl_" + "A" * 43, "not-a-link", "x" * 500):
        assert api_factory(auth=False).get(f"/portal/{bad}").status_code == 410, bad
        assert api_factory(auth=False).post(f"/portal/{bad}").status_code == 410, bad

    page = first.get("/portal")
    assert page.status_code == 200 and 'data-portal="acme"' in page.text
    assert "acme-hook" in page.text and "globex-hook" not in page.text
    assert two_tenants["globex"] not in page.text
    assert 'id="counters"' not in page.text and 'id="tenants"' not in page.text  # the operator's sections
    assert page.headers["content-security-policy"].endswith("frame-ancestors 'self'")
    assert "x-frame-options" not in page.headers
    operator = api_factory(auth=False)
    assert operator.post("/web/login", json={"api_key": api_key}, headers=CSRF).status_code == 204
    operator_page = operator.get("/")
    assert operator_page.headers["x-frame-options"] == "DENY"
    assert operator_page.headers["content-security-policy"].endswith("frame-ancestors 'none'")
    assert 'data-portal-tenant="acme"' in operator_page.text and 'data-portal-tenant="globex"' in operator_page.text


def test_looking_at_a_link_leaves_it_and_only_a_post_from_its_own_page_opens_it(
    acme_link: str, api_factory: Callable[..., TestClient], raw_redis: redis.Redis, store_keys: Keys
) -> None:
    """A chat app's preview (a GET) does not use a link up; another site cannot post it for a visitor."""
    link = acme_link
    for _ in range(2):
        preview = api_factory(auth=False).get(link, follow_redirects=False)
        assert preview.status_code == 200 and "set-cookie" not in preview.headers
        assert f'<form method="post" action="{link}" id="portal-open">' in preview.text
        assert "frame-ancestors 'self'" in preview.headers["content-security-policy"]
    assert portal_keys(raw_redis, store_keys) and all(b":portal:link:" in k for k in portal_keys(raw_redis, store_keys))
    browser = api_factory(auth=False)
    cross = browser.post(link, headers={"origin": "https://evil.example"}, follow_redirects=False)
    assert cross.status_code == 403 and "set-cookie" not in cross.headers
    fetched = browser.post(link, headers={"sec-fetch-site": "cross-site", "origin": "null"}, follow_redirects=False)
    assert fetched.status_code == 403 and "set-cookie" not in fetched.headers
    own = {"origin": "null", "sec-fetch-site": "same-origin"}  # a browser's post from the link's page
    opened = browser.post(link, headers=own, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["set-cookie"].startswith("dispatcher_portal=")
    assert api_factory(auth=False).get(link).status_code == 410  # used: even looking at it says so


def test_an_expired_link_is_refused_and_writes_nothing(
    api_factory: Callable[..., TestClient], two_tenants: dict[str, str], raw_redis: redis.Redis, store_keys: Keys
) -> None:
    operator = api_factory(portal_link_ttl_s=1)
    link = link_path(operator.post("/v1/tenants/acme/portal-link").json()["url"])
    time.sleep(1.2)
    assert api_factory(auth=False).get(link).status_code == 410
    late = api_factory(auth=False).post(link, follow_redirects=False)
    assert late.status_code == 410 and "expired or was used already" in late.text
    assert portal_keys(raw_redis, store_keys) == []


def test_a_portal_session_reaches_its_own_tenant_only(
    open_portal: Callable[[str], TestClient], dsp: Dispatcher, two_tenants: dict[str, str]
) -> None:
    browser = open_portal("acme")
    acme = {"X-Dispatcher-Portal": "acme"}
    theirs = two_tenants["globex"]

    listed = browser.get("/v1/endpoints", headers=acme)
    assert [e["id"] for e in listed.json()["endpoints"]] == [two_tenants["acme"]]
    assert browser.get(f"/v1/endpoints/{theirs}", headers=acme).status_code == 404
    assert browser.post(f"/v1/endpoints/{theirs}/test", headers={**acme, **CSRF}).status_code == 404
    assert browser.get("/v1/tenants/globex", headers=acme).status_code == 404
    assert browser.get("/v1/stats", headers=acme).status_code == 403  # operator only
    assert browser.post("/v1/tenants/acme/portal-link", headers={**acme, **CSRF}).status_code == 403
    fragment = browser.get("/web/endpoints", headers=acme)
    assert fragment.status_code == 200 and two_tenants["acme"] in fragment.text and theirs not in fragment.text

    body = {"url": "http://127.0.0.1:9/new-hook", "event_types": ["order.*"]}
    no_csrf = browser.post("/v1/endpoints", json=body, headers=acme)
    assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf"
    elsewhere = browser.post("/v1/endpoints", json={**body, "tenant": "globex"}, headers={**acme, **CSRF})
    assert elsewhere.status_code == 404
    assert len(dsp.list_endpoints()) == 2  # neither wrote anything
    created = browser.post("/v1/endpoints", json=body, headers={**acme, **CSRF})
    assert created.status_code == 201 and created.json()["tenant"] == "acme"
    assert created.json()["secret"].startswith("whsec_")  # shown once, to the portal that made it

    # the cookie counts only with the portal's header, and only for the tenant the page shows
    assert browser.get("/v1/endpoints").status_code == 401  # not an operator session
    assert browser.get("/v1/endpoints", headers={"X-Dispatcher-Portal": "globex"}).status_code == 401
    assert browser.get("/", follow_redirects=False).text.count('id="login-form"') == 1

    dsp.delete_tenant("acme")  # the tenant goes: so does its portal
    assert browser.get("/v1/endpoints", headers=acme).status_code == 401
    assert browser.get("/portal").status_code == 401


def test_ending_the_portal_session(
    open_portal: Callable[[str], TestClient], two_tenants: dict[str, str], raw_redis: redis.Redis, store_keys: Keys
) -> None:
    browser = open_portal("acme")
    acme = {"X-Dispatcher-Portal": "acme"}
    assert browser.post("/portal/logout").status_code == 403  # CSRF header required
    assert len(portal_keys(raw_redis, store_keys)) == 1
    assert browser.post("/portal/logout", headers=CSRF).status_code == 204
    assert portal_keys(raw_redis, store_keys) == []
    browser.cookies.clear()
    over = browser.get("/portal")
    assert over.status_code == 401 and "portal session has ended" in over.text
    assert browser.get("/v1/endpoints", headers=acme).status_code == 401


def test_over_https_the_cookie_works_in_another_sites_iframe(
    api: TestClient, api_factory: Callable[..., TestClient], two_tenants: dict[str, str]
) -> None:
    link = link_path(api.post("/v1/tenants/acme/portal-link").json()["url"])
    framed = api_factory(auth=False, portal_frame_ancestors="https://app.example.com 'self'")
    framed.base_url = framed.base_url.copy_with(scheme="https")
    opened = framed.post(link, follow_redirects=False)
    cookie = opened.headers["set-cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie and "Partitioned" in cookie
    page = framed.get("/portal")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].endswith("frame-ancestors https://app.example.com 'self'")


@pytest.mark.parametrize("value", ["", "https://a.example.com; script-src *", "https://a.example.com,'self'", "*"])
def test_a_bad_frame_ancestors_setting_is_refused(settings: Settings, value: str) -> None:
    with pytest.raises(ValidationError, match="portal_frame_ancestors must be CSP frame-ancestors sources"):
        Settings(**{**settings.model_dump(), "portal_frame_ancestors": value})


def test_portal_link_in_python(dsp: Dispatcher, raw_redis: redis.Redis, store_keys: Keys) -> None:
    dsp.create_tenant("acme")
    link = dsp.portal_link("acme", "http://localhost:8000/")
    assert link.tenant == "acme" and link.url.startswith("http://localhost:8000/portal/whpl_")
    assert "whpl_" not in repr(link)  # the token is a credential: never in a repr
    for base in ("localhost:8000", "http://h.example.com/path", "javascript:alert(1)"):
        with pytest.raises(InvalidInput, match="must be http"):
            dsp.portal_link("acme", base)
    with pytest.raises(TenantNotFound):
        dsp.portal_link("nope")
    assert len(portal_keys(raw_redis, store_keys)) == 1
