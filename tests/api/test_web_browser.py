"""The web form's other kinds in a real headless Chromium, against ``dispatcher api`` in its own process and a
real Celery worker: a chat robot (DingTalk, with a template and a robot secret, delivered to a loopback fake
robot) and a ``poll`` endpoint, whose secret, pull token and ``dispatcher listen`` line are shown once; the
copied line is then run as it is, in a shell, and receives the events. The form's errors write nothing.
Without a browser: the pull-token route, and what a poll endpoint's card says.

Saves ``poll-created.png`` (the form with a poll endpoint's answer) where ``screenshots`` says (see
tests/api/conftest.py; DISPATCHER_SCREENSHOTS_DIR=docs/screenshots refreshes the README's).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_plus

import pytest

from dispatcher import Dispatcher, Settings, verify
from dispatcher.robots import dingtalk
from dispatcher.signing import endpoint_token

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.conftest import ApiServer, Receiver, Worker

ROBOT_SECRET = "SEC0123456789abcdef"
DINGTALK_OK = (200, {"Content-Type": "application/json"}, b'{"errcode": 0, "errmsg": "ok"}')


class Listener:
    """A shell command line run as a user would paste it, its output lines collected as they come."""

    def __init__(self, line: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "-c", line], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C: prints the last cursor
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.reader.join(5)


@pytest.fixture
def listeners() -> Iterator[Callable[[str], Listener]]:
    started: list[Listener] = []

    def start(line: str) -> Listener:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}  # the line alone must do
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        started.append(Listener(line, env))
        return started[-1]

    yield start
    for listener in started:
        listener.stop()


def _poll(api_url: str, endpoint_id: str, credential: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{api_url}/v1/endpoints/{endpoint_id}/poll?cursor=start", headers={"Authorization": f"Bearer {credential}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_form_creates_a_chat_robot_and_a_poll_endpoint_whose_listen_line_works(
    api_server: ApiServer,
    api_key: str,
    browser_page: object,
    dsp: Dispatcher,
    settings: Settings,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    listeners: Callable[[str], Listener],
    screenshots: Path,
    wait_until: Callable[..., Any],
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    (screenshots / "poll-created.png").unlink(missing_ok=True)
    worker_factory(settings)
    robot = receiver_factory(reply=lambda n, r: DINGTALK_OK)

    page.goto(api_server.url + "/")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_label("Webhook URL")).to_be_visible()
    error = page.locator("#subscribe-error")
    add = page.get_by_role("button", name="Add endpoint")

    # -- the form's errors: a clear message, nothing written --------------------------------------------
    add.click()
    expect(error).to_have_text(
        "Enter the URL the events are POSTed to (http:// or https://), or choose the kind Poll for a consumer"
        " without a URL."
    )
    page.get_by_label("Webhook URL").fill("example.com/hooks")
    add.click()
    expect(error).to_have_text("The URL must start with http:// or https://")
    page.get_by_label("Webhook URL").fill("https://exa mple.com/hooks")
    add.click()
    expect(error).to_contain_text("invalid URL: it contains a space")  # the API's own message
    page.get_by_label("Kind").select_option("poll")
    page.get_by_label("Event types").fill("order..paid")
    add.click()
    expect(error).to_contain_text("bad subscription pattern 'order..paid'")
    expect(page.locator("#created")).to_be_hidden()
    assert dsp.list_endpoints() == []

    # -- a chat robot: DingTalk with a template and its robot secret ------------------------------------------
    page.get_by_label("Kind").select_option("dingtalk")
    page.get_by_label("Webhook URL").fill(robot.url_for("/robot/send?access_token=tok-9f8e7d"))
    page.get_by_label("Event types").fill("order.*")
    page.get_by_text("Chat robot options").click()
    page.get_by_label("Message template").fill("{type}: order {data.order.id}")
    page.get_by_label("Robot secret (DingTalk, Feishu)").fill(ROBOT_SECRET)
    add.click()
    expect(page.locator("#robot-help")).to_have_text(
        "A dingtalk chat robot: each event arrives as a message, at most 0.33 per second."
    )
    expect(error).to_be_hidden()
    for hidden in ("#secret-help", "#webhook-help", "#poll-help"):
        expect(page.locator(hidden)).to_be_hidden()
    (bot,) = dsp.list_endpoints()
    assert (bot.kind, bot.event_types, bot.template) == ("dingtalk", ["order.*"], "{type}: order {data.order.id}")
    assert bot.robot_secret == ROBOT_SECRET and bot.url.endswith("/robot/send?access_token=tok-9f8e7d")
    assert page.get_by_label("Robot secret (DingTalk, Feishu)").input_value() == ""
    bot_card = page.locator(f'article[data-endpoint-id="{bot.id}"]')
    expect(bot_card.locator(".badge", has_text="dingtalk")).to_be_visible()
    expect(bot_card.locator(".url")).to_have_text(robot.url_for("/robot/…?…"))  # the token is masked
    assert "tok-9f8e7d" not in page.content() and ROBOT_SECRET not in page.content()

    dsp.enqueue("order.paid", {"order": {"id": 42}})
    (sent,) = robot.wait_for(1, timeout_s=30)
    query = parse_qs(sent.query)
    assert query["access_token"] == ["tok-9f8e7d"]
    assert query["sign"] == [unquote_plus(dingtalk.sign(ROBOT_SECRET, int(query["timestamp"][0])))]  # signed
    message = json.loads(sent.body)
    assert message["msgtype"] == "markdown" and "order.paid: order 42" in message["markdown"]["text"]
    expect(bot_card.locator("tr.delivery[data-state=delivered]")).to_have_count(1, timeout=30_000)

    # -- a poll endpoint: no URL; secret, pull token and a `dispatcher listen` line shown once --------------------
    page.get_by_label("Kind").select_option("poll")
    expect(page.get_by_label("Webhook URL")).to_be_disabled()
    expect(page.locator("#robot-options")).to_be_hidden()
    expect(page.locator("#poll-note")).to_contain_text("A poll endpoint has no URL")
    page.get_by_label("Event types").fill("order.*")
    add.click()
    expect(page.locator("#poll-help")).to_be_visible()
    expect(error).to_be_hidden()
    expect(page.locator("#webhook-help")).to_be_hidden()
    expect(page.locator("#robot-help")).to_be_hidden()
    poll_ep = next(ep for ep in dsp.list_endpoints() if ep.kind == "poll")
    assert poll_ep.url == "" and poll_ep.event_types == ["order.*"] and poll_ep.template is None
    secret = page.locator("#secret").inner_text().strip()
    assert secret == poll_ep.secret and secret.startswith("whsec_")
    token = page.locator("#pull-token").inner_text().strip()
    assert token == endpoint_token(poll_ep.id, secret) and token.startswith("whpt_")
    expect(page.locator("#created-id")).to_have_text(poll_ep.id)
    line = page.locator("#listen-line").inner_text().strip()
    assert line == f"dispatcher listen {poll_ep.id} --url {api_server.url} --secret {secret} --from-start"
    expect(page.locator("#poll-curl")).to_contain_text(f"Bearer {token}")
    poll_card = page.locator(f'article[data-endpoint-id="{poll_ep.id}"]')
    expect(poll_card.locator(".url")).to_contain_text(f"dispatcher listen {poll_ep.id}")
    expect(poll_card).to_contain_text("No deliveries: its events wait in its log")
    expect(poll_card.locator(".status")).to_contain_text("read by pull")
    expect(poll_card).not_to_contain_text(secret)
    expect(page.locator("#c-workers")).to_have_text("1", timeout=30_000)
    page.locator("section.card").first.screenshot(path=str(screenshots / "poll-created.png"))
    page.reload()  # shown once: gone after a reload, and the listings never show it
    assert secret not in page.content() and token not in page.content()

    # -- the copied line, run as it is, gets the events: from before it started, after, the page's test event ----
    before = dsp.enqueue("order.created", {"order": {"id": 7}})
    listener = listeners(line)
    wait_until(lambda: "Listening to" in listener.output(), 30, 0.1, what="dispatcher listen started")
    after = dsp.enqueue("order.paid", {"order": {"id": 8}})
    page.locator(f'article[data-endpoint-id="{poll_ep.id}"]').get_by_role("button", name="Send test event").click()
    expect(page.locator("#flash")).to_contain_text("Test event msg_")
    test_id = page.locator("#flash").inner_text().split()[2]
    wait_until(lambda: test_id in listener.output(), 30, 0.1, what="the events printed by dispatcher listen")
    printed = [ln for ln in listener.lines if "-->" in ln]
    assert [ln.split("[")[1].split("]")[0] for ln in printed] == [before, after, test_id], listener.output()
    assert all("(signature ok)" in ln for ln in printed), listener.output()
    assert "--> webhook.test" in printed[2]
    listener.stop()
    assert "last cursor:" in listener.output()

    # -- the shown token reads this endpoint's log over HTTP, and nothing else --------------------------------
    status, body = _poll(api_server.url, poll_ep.id, token)
    assert status == 200 and [e["id"] for e in body["events"]] == [before, after, test_id]
    data = [verify(e["body"].encode(), e["headers"], secret)["data"] for e in body["events"]]
    assert data[:2] == [{"order": {"id": 7}}, {"order": {"id": 8}}] and "message" in data[2]
    assert _poll(api_server.url, bot.id, token)[0] == 403
    assert (screenshots / "poll-created.png").stat().st_size > 0


def test_pull_token_route_derives_the_token_for_a_logged_in_page(anon: TestClient, api_key: str) -> None:
    secret = "whsec_" + "A" * 32
    body = {"endpoint_id": "ep_01ABC", "secret": secret}
    assert anon.post("/web/pull-token", json=body, headers={"X-Dispatcher-CSRF": "1"}).status_code == 401
    assert anon.post("/web/login", json={"api_key": api_key}, headers={"X-Dispatcher-CSRF": "1"}).status_code == 204
    refused = anon.post("/web/pull-token", json=body)  # the session cookie alone: no CSRF header
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
    answer = anon.post("/web/pull-token", json=body, headers={"X-Dispatcher-CSRF": "1"})
    assert answer.status_code == 200 and answer.json() == {"pull_token": endpoint_token("ep_01ABC", secret)}
    bad = anon.post("/web/pull-token", json={**body, "secret": "whsec_!!"}, headers={"X-Dispatcher-CSRF": "1"})
    assert bad.status_code == 400 and "invalid secret" in bad.json()["error"]["message"]


def test_a_poll_card_says_it_is_read_by_pull_and_how_long_its_log_keeps_events(
    api_factory: Callable[..., TestClient], dsp: Dispatcher
) -> None:
    ep = dsp.subscribe_poll(["order.*"])
    for age, kept in ((7 * 86400, "kept up to 7 days"), (86400, "kept up to 1 day"), (5400, "kept up to 1.5 hours")):
        client = api_factory(poll_max_age_s=age, poll_max_events=2000)
        card = client.get("/web/endpoints").text.split(f'data-endpoint-id="{ep.id}"')[1]
        assert "read by pull" in card and f"dispatcher listen {ep.id}" in card and "no attempt yet" not in card
        assert f"({kept}, at most about 2,000 events)" in card
