"""Chat robots end to end: each platform's receiver (aiohttp on loopback) checks what it gets the way
the platform does — body shape, size limits, signatures recomputed from the platform's docs
(REFERENCE.md), never with our own render/sign code — and answers like the platform."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
import pytest

from dispatcher import Dispatcher
from dispatcher.worker.runtime import Runtime

pytestmark = pytest.mark.every_engine  # each test runs once per HTTP engine

if TYPE_CHECKING:
    from tests.conftest import Received, Receiver, Reply

    Check = Callable[[Received], str | None]  # returns what is wrong, None when the platform would accept it

MARKER = "…(truncated)"
BIG = "lorem ipsum dolor sit amet, 中文字符 ✓ " * 4000  # ~200 KB of mixed-width text
FAST = 1000.0  # rate limit for these tests (the platforms' defaults are slow: DingTalk 20/min)
DING_SECRET = "SEC" + "0123456789abcdef" * 4
FEISHU_SECRET = "fs_Secret-0123456789"


def _json(req: Received) -> Any:
    try:
        return orjson.loads(req.body)
    except orjson.JSONDecodeError:
        return None


def check_slack(req: Received) -> str | None:
    doc = _json(req)
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str) or not doc["text"]:
        return "invalid_payload: no text"
    if len(doc["text"]) > 40_000:
        return "msg_too_long"
    blocks = doc.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return "invalid_blocks"
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            if block["text"]["type"] != "plain_text" or not 1 <= len(block["text"]["text"]) <= 150:
                return "invalid_blocks: header"
        elif kind == "section":
            if not 1 <= len(block["text"]["text"]) <= 3000:
                return "invalid_blocks: section text"
        elif kind == "context":
            if not block.get("elements"):
                return "invalid_blocks: context"
        else:
            return f"invalid_blocks: {kind}"
    return None


def check_discord(req: Received) -> str | None:
    doc = _json(req)
    if not isinstance(doc, dict):
        return "400: not JSON"
    content, embeds = doc.get("content", ""), doc.get("embeds", [])
    if not content and not embeds:
        return "400: Cannot send an empty message"
    if len(content) > 2000:
        return "400: content must be 2000 or fewer in length"
    if not isinstance(embeds, list) or len(embeds) > 10:
        return "400: embeds"
    total = 0
    for e in embeds:
        if len(e.get("title", "")) > 256 or len(e.get("description", "")) > 4096:
            return "400: embed field too long"
        total += len(e.get("title", "")) + len(e.get("description", "")) + len(e.get("footer", {}).get("text", ""))
    if total > 6000:
        return "400: embeds too long"
    return None


def check_teams(req: Received) -> str | None:
    doc = _json(req)
    if len(req.body) > 28_000:
        return "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413"
    if not isinstance(doc, dict) or doc.get("type") != "message":
        return "400: type must be message"
    attachments = doc.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return "400: one attachment expected"
    att = attachments[0]
    if att.get("contentType") != "application/vnd.microsoft.card.adaptive":
        return "400: contentType"
    card = att.get("content", {})
    if card.get("type") != "AdaptiveCard" or not card.get("version") or not isinstance(card.get("body"), list):
        return "400: not an Adaptive Card"
    if not all(item.get("type") == "TextBlock" and isinstance(item.get("text"), str) for item in card["body"]):
        return "400: card body"
    return None


def check_dingtalk(req: Received) -> str | None:
    query = parse_qs(req.query, keep_blank_values=True)
    if query.get("access_token") != ["tok"]:
        return "300001 token is not exist"
    try:
        ts = int(query["timestamp"][0])
    except (KeyError, ValueError):
        return "310000 timestamp missing"
    if abs(ts - time.time() * 1000) > 3600_000:
        return "310000 timestamp too old"
    expected = base64.b64encode(
        hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
    ).decode()
    if query.get("sign") != [expected]:
        return "310000 sign not match"
    if len(req.body) > 20_000:
        return "460101 message too long"
    doc = _json(req)
    if not isinstance(doc, dict):
        return "40035 not JSON"
    if doc.get("msgtype") == "markdown":
        md = doc.get("markdown", {})
        if not md.get("title") or not md.get("text"):
            return "40035 markdown needs title and text"
    elif doc.get("msgtype") == "text":
        if not doc.get("text", {}).get("content"):
            return "40035 text needs content"
    else:
        return "40035 msgtype"
    return None


def check_feishu(req: Received) -> str | None:
    doc = _json(req)
    if len(req.body) > 20 * 1024:
        return "9499 request body too large"
    if not isinstance(doc, dict):
        return "9499 bad request"
    try:
        ts = int(doc["timestamp"])
    except (KeyError, ValueError, TypeError):
        return "19021 sign match fail: no timestamp"
    if abs(ts - time.time()) > 3600:
        return "19021 timestamp is not within one hour"
    expected = base64.b64encode(hmac.new(f"{ts}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()).decode()
    if doc.get("sign") != expected:
        return "19021 sign match fail"
    if doc.get("msg_type") == "post":
        locales = doc.get("content", {}).get("post", {})
        if not locales:
            return "9499 post has no locale"
        for post in locales.values():
            if not isinstance(post.get("title"), str) or not isinstance(post.get("content"), list):
                return "9499 post needs title and content"
            for paragraph in post["content"]:
                if not all(el.get("tag") == "text" and isinstance(el.get("text"), str) for el in paragraph):
                    return "9499 unsupported element"
    elif doc.get("msg_type") != "text" or not doc.get("content", {}).get("text"):
        return "9499 msg_type"
    return None


def check_wecom(req: Received) -> str | None:
    doc = _json(req)
    if not isinstance(doc, dict):
        return "40008 invalid message type"
    kind = doc.get("msgtype")
    if kind not in ("text", "markdown"):
        return "40008 invalid message type"
    content = doc.get(kind, {}).get("content")
    if not isinstance(content, str) or not content:
        return "44004 empty content"
    if len(content.encode()) > 2048:
        return "40058 content exceed max length"
    return None


def platform_reply(kind: str, check: Check) -> Callable[[int, Received], Reply]:
    """Answer like the platform: its success shape, or its failure shape for what ``check`` finds."""

    def reply(n: int, req: Received) -> Reply:
        problem = check(req)
        if kind == "slack":
            return (200, {}, b"ok") if problem is None else (400, {}, problem.encode())
        if kind == "discord":
            return (204, {}, b"") if problem is None else (400, {}, orjson.dumps({"message": problem}))
        if kind == "teams":
            return (200, {}, b"1") if problem is None else (200, {}, problem.encode())
        if kind in ("dingtalk", "wecom"):
            code = 0 if problem is None else int(problem.split()[0])
            return 200, {}, orjson.dumps({"errcode": code, "errmsg": problem or "ok"})
        code = 0 if problem is None else int(problem.split()[0])  # feishu
        return 200, {}, orjson.dumps({"code": code, "msg": problem or "success", "data": {}})

    return reply


PLATFORMS: dict[str, tuple[Check, dict[str, Any]]] = {
    "slack": (check_slack, {}),
    "discord": (check_discord, {}),
    "teams": (check_teams, {}),
    "dingtalk": (check_dingtalk, {"robot_secret": DING_SECRET}),
    "feishu": (check_feishu, {"robot_secret": FEISHU_SECRET}),
    "wecom": (check_wecom, {}),
}


def robot(dsp: Dispatcher, rec: Receiver, kind: str, **options: Any) -> Any:
    url = rec.url + ("?access_token=tok" if kind == "dingtalk" else "?key=k" if kind == "wecom" else "")
    options.setdefault("rate_limit_per_s", FAST)
    return dsp.subscribe(url, ["*"], kind=kind, **options)


def message_text(kind: str, req: Received) -> str:
    """All the human-readable text of a message, however the platform lays it out."""
    doc = orjson.loads(req.body)
    if kind == "slack":
        return doc["text"] + "".join(b.get("text", {}).get("text", "") for b in doc["blocks"])
    if kind == "discord":
        return doc["content"] + "".join(e.get("title", "") for e in doc["embeds"])
    if kind == "teams":
        return "".join(i["text"] for i in doc["attachments"][0]["content"]["body"])
    if kind == "dingtalk":
        return doc["markdown"]["text"]
    if kind == "feishu":
        post = next(iter(doc["content"]["post"].values()))
        return post["title"] + "".join(el["text"] for p in post["content"] for el in p)
    return doc["markdown"]["content"]


@pytest.mark.parametrize("kind", sorted(PLATFORMS))
def test_each_platform_accepts_the_message(
    kind: str,
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    check, options = PLATFORMS[kind]
    rec = receiver_factory(reply=platform_reply(kind, check))
    robot(dsp, rec, kind, template="Order {data.order.id} paid: {data.total} ({type})", **options)
    eid = dsp.enqueue("order.paid", {"order": {"id": 42}, "total": "9.99"})
    pump(runtime, lambda: states(dsp, eid) in (["delivered"], ["retrying"], ["dead"]))
    assert [check(r) for r in rec.requests] == [None], rec.requests[0].body[:300]
    assert states(dsp, eid) == ["delivered"]
    assert "Order 42 paid: 9.99 (order.paid)" in message_text(kind, rec.requests[0])
    assert "webhook-signature" not in rec.requests[0].headers  # not Standard Webhooks


@pytest.mark.parametrize("kind", sorted(PLATFORMS))
def test_oversized_events_are_cut_to_the_platform_limit(
    kind: str,
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    check, options = PLATFORMS[kind]
    default, custom = (receiver_factory(reply=platform_reply(kind, check)) for _ in range(2))
    robot(dsp, default, kind, **options)  # the default template: the fields of data (20 at most)
    robot(dsp, custom, kind, template="{type}: {data.note} {data|json}", **options)
    many = {f"field{i}": BIG[: 290 + i] for i in range(40)}
    ids = [dsp.enqueue("big.fields", many), dsp.enqueue("big.text", {"note": BIG})]
    pump(runtime, lambda: all(states(dsp, e) == ["delivered"] * 2 for e in ids))
    requests = default.requests + custom.requests
    assert [check(r) for r in requests] == [None] * 4
    (fields,) = [t for r in default.requests if "big.fields" in (t := message_text(kind, r))]
    assert "… and 20 more" in fields or MARKER in fields
    (text,) = [t for r in custom.requests if "big.text" in (t := message_text(kind, r))]
    assert MARKER in text and "lorem ipsum" in text  # the custom template's text was cut, with the marker


def test_dingtalk_without_secret_and_with_a_wrong_one(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    rec = receiver_factory(reply=platform_reply("dingtalk", check_dingtalk))
    ep = robot(dsp, rec, "dingtalk", robot_secret="SECwrong")
    eid = dsp.enqueue("a.b", {"x": 1})
    pump(runtime, lambda: states(dsp, eid) == ["retrying"])
    (d,) = dsp.deliveries(eid)
    assert d.attempts[0].status == 200 and "310000" in (d.attempts[0].error or "")  # errcode != 0: not delivered
    dsp.update_endpoint(ep.id, robot_secret=DING_SECRET)
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    assert [a.error for a in dsp.deliveries(eid)[0].attempts][-1] is None


def test_dingtalk_error_code_is_retried_not_delivered(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    answers = [{"errcode": 310000, "errmsg": "keywords not in content"}, {"errcode": 0, "errmsg": "ok"}]
    rec = receiver_factory(reply=lambda n, r: (200, {}, orjson.dumps(answers[min(n, 2) - 1])))
    robot(dsp, rec, "dingtalk")
    eid = dsp.enqueue("a.b", {"x": 1})
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    (d,) = dsp.deliveries(eid)
    assert [a.status for a in d.attempts] == [200, 200]
    assert d.attempts[0].error == "errcode 310000: keywords not in content" and d.attempts[1].error is None
    assert rec.requests[1].at - rec.requests[0].at >= 0.18  # the schedule's first delay


@pytest.mark.parametrize(
    ("kind", "answer", "min_delay_s"),
    [
        ("dingtalk", {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}, 590),
        ("wecom", {"errcode": 45009, "errmsg": "api freq out of limit"}, 55),
        ("feishu", {"code": 11232, "msg": "frequency limited"}, 55),
        ("feishu", {"code": 9499, "msg": "Too Many Request"}, 55),
    ],
)
def test_throttling_codes_wait_longer(
    kind: str,
    answer: dict[str, Any],
    min_delay_s: float,
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    rec = receiver_factory(reply=lambda n, r: (200, {}, orjson.dumps(answer)))
    ep = robot(dsp, rec, kind)
    eid = dsp.enqueue("a.b", {"x": 1})
    pump(runtime, lambda: states(dsp, eid) == ["retrying"])
    (d,) = dsp.deliveries(eid)
    assert d.attempts[0].status == 200 and "throttled" in (d.attempts[0].error or "")
    assert d.next_attempt_at is not None and d.next_attempt_at - time.time() >= min_delay_s * 0.8
    # and the endpoint's other messages are held back too: no new send slot before then
    tat = float(runtime.redis.hget(runtime.keys.rate_limit(ep.id), "tat") or 0)
    assert tat / 1000 - time.time() >= min_delay_s * 0.9


def test_discord_429_retry_after_is_respected(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    limited = orjson.dumps({"message": "You are being rate limited.", "retry_after": 1.2, "global": False})
    rec = receiver_factory(
        reply=lambda n, r: (429, {"content-type": "application/json"}, limited) if n == 1 else (204, {}, b"")
    )
    robot(dsp, rec, "discord")
    eid = dsp.enqueue("a.b", {"x": 1})
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    (d,) = dsp.deliveries(eid)
    assert [a.status for a in d.attempts] == [429, 204]
    gap = rec.requests[1].at - rec.requests[0].at
    assert gap >= 1.15  # retry_after (seconds, in the body) beat the 0.2 s schedule


def test_teams_200_with_throttle_text_is_a_failure(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    text = (
        b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 "
        b"with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deadbeef.0.."
    )
    rec = receiver_factory(reply=lambda n, r: (200, {"content-type": "text/plain; charset=utf-8"}, text))
    robot(dsp, rec, "teams")
    eid = dsp.enqueue("a.b", {"x": 1})
    pump(runtime, lambda: states(dsp, eid) == ["retrying"])
    (d,) = dsp.deliveries(eid)
    assert d.attempts[0].status == 200 and (d.attempts[0].error or "").startswith("throttled")
    assert d.next_attempt_at is not None and d.next_attempt_at - time.time() >= 20  # not the 0.2 s schedule


def test_teams_200_with_other_error_is_retried_on_schedule(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    text = b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413 with ..."
    rec = receiver_factory(reply=lambda n, r: (200, {}, text) if n == 1 else (202, {}, b""))
    robot(dsp, rec, "teams")
    eid = dsp.enqueue("a.b", {"x": 1})
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    assert [a.status for a in dsp.deliveries(eid)[0].attempts] == [200, 202]


def test_gzip_answers_are_read(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    import gzip

    bad = gzip.compress(orjson.dumps({"errcode": 310000, "errmsg": "keywords not in content"}))
    rec = receiver_factory(reply=lambda n, r: (200, {"Content-Encoding": "gzip"}, bad))
    robot(dsp, rec, "wecom")
    eid = dsp.enqueue("a.b", {"x": 1})
    pump(runtime, lambda: states(dsp, eid) == ["retrying"])
    assert "310000" in (dsp.deliveries(eid)[0].attempts[0].error or "")


def test_send_test_reaches_a_robot(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    rec = receiver_factory(reply=platform_reply("slack", check_slack))
    ep = robot(dsp, rec, "slack")
    eid = dsp.send_test(ep.id)
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    assert "webhook.test" in message_text("slack", rec.requests[0])
    assert "test event from webhook-dispatcher" in message_text("slack", rec.requests[0])


def test_data_cannot_mention_everyone(
    dsp: Dispatcher, runtime: Runtime, receiver_factory: Callable[..., Receiver], pump: Callable[..., Any]
) -> None:
    slack, discord = receiver_factory(), receiver_factory(reply=lambda n, r: (204, {}, b""))
    robot(dsp, slack, "slack")
    robot(dsp, discord, "discord")
    dsp.enqueue("a.b", {"who": "<!channel> @everyone <https://evil.example|click>"})
    pump(runtime, lambda: slack.count() == 1 and discord.count() == 1)
    slack_doc, discord_doc = orjson.loads(slack.requests[0].body), orjson.loads(discord.requests[0].body)
    assert "<!channel>" not in slack_doc["text"] and "&lt;!channel&gt;" in slack_doc["text"]
    assert "<https://evil" not in orjson.dumps(slack_doc["blocks"]).decode()
    assert discord_doc["allowed_mentions"] == {"parse": []}
