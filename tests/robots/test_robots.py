"""Chat robots without the network: kinds and detection, templates and their safety, size limits,
the platforms' answer rules, and the endpoint / API / CLI fields."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from dispatcher import Dispatcher, InvalidInput
from dispatcher.cli.main import cli
from dispatcher.errors import InvalidTemplate
from dispatcher.models import Endpoint
from dispatcher.robots import PLATFORMS, ROBOT_KINDS, detect_kind, get
from dispatcher.robots.common import MARKER, cut_bytes
from dispatcher.robots.template import MAX_OUTPUT_CHARS, compile_template, render, validate_template

EVENT: dict[str, Any] = {
    "id": "msg_01TEST",
    "type": "order.paid",
    "timestamp": "2026-11-28T03:55:08.368Z",
    "data": {"order": {"id": 42, "items": [{"sku": "A-1"}, {"sku": "B-2"}]}, "total": 9.99, "paid": True, "x": None},
}


def endpoint(kind: str, **fields: Any) -> Endpoint:
    return Endpoint(id="ep_1", url="https://robot.example/hook?key=k", event_types=["*"], secret="whsec_x", kind=kind,
                    **fields)  # fmt: skip


# -- detection -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXX", "slack"),
        ("https://discord.com/api/webhooks/123/abc", "discord"),
        ("https://discordapp.com/api/webhooks/123/abc", "discord"),
        ("https://discord.com/api/v10/webhooks/123/abc", "discord"),
        ("https://acme.webhook.office.com/webhookb2/abc/IncomingWebhook/def/ghi", "teams"),
        ("https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x", "teams"),
        ("https://oapi.dingtalk.com/robot/send?access_token=abc", "dingtalk"),
        ("https://open.feishu.cn/open-apis/bot/v2/hook/abc", "feishu"),
        ("https://open.larksuite.com/open-apis/bot/v2/hook/abc", "feishu"),
        ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc", "wecom"),
        ("https://HOOKS.SLACK.COM/services/x", "slack"),
        ("https://example.com/hooks", None),
        ("https://discord.com/channels/1/2", None),  # not a webhook path
        ("https://hooks.slack.com.evil.example/services/x", None),
        ("https://evil-webhook.office.com.example/x", None),
        ("not a url", None),
    ],
)
def test_detect_kind(url: str, kind: str | None) -> None:
    assert detect_kind(url) == kind


def test_every_platform_module_has_the_interface() -> None:
    assert set(ROBOT_KINDS) == {"slack", "discord", "teams", "dingtalk", "feishu", "wecom"}
    for kind, platform in PLATFORMS.items():
        assert kind == platform.KIND and platform.DEFAULT_RATE_PER_S > 0
        assert callable(platform.render) and callable(platform.classify)
    assert get("webhook") is None and get("poll") is None


# -- templates -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{type} at {timestamp}", "order.paid at 2026-11-28T03:55:08.368Z"),
        ("#{data.order.id}: {data.total} paid={data.paid} x=[{data.x}]", "#42: 9.99 paid=true x=[]"),
        ("{data.order.items.1.sku} {data.order.items.9.sku}|", "B-2 |"),
        ("{data.order|json}", '{"id":42,"items":[{"sku":"A-1"},{"sku":"B-2"}]}'),
        ("{type|upper} {data.order.items.0.sku|lower}", "ORDER.PAID a-1"),
        ("{type|trunc:5}", "orde…"),
        ("{type|json}", '"order.paid"'),
        ("{{literal}} {{{type}}}", "{literal} {order.paid}"),
        ("{ data.order.id }", "42"),
        ("{data.missing.deeper}", ""),
    ],
)
def test_template_rendering(template: str, expected: str) -> None:
    assert validate_template(template) == template
    assert render(template, EVENT) == expected


def test_default_template_lists_the_fields_of_data() -> None:
    text = render(None, EVENT)
    assert text.splitlines() == ['order: {"id":42,"items":[{"sku":"A-1"},{"sku":"B-2"}]}', "total: 9.99",
                                 "paid: true", "x: "]  # fmt: skip
    many = {**EVENT, "data": {f"k{i}": i for i in range(30)}}
    assert render(None, many).splitlines()[-1] == "… and 10 more"
    assert render(None, {**EVENT, "data": [1, 2]}) == "[1,2]"


@pytest.mark.parametrize(
    "template",
    [
        "{__class__}",
        "{data.__init__}",
        "{data.__class__.__mro__}",
        "{type.__len__}",
        "{data.items}",  # a dict's key, never the method
        "{data.order.items.__getitem__}",
        "{0}",
        "{data!r}",
        "{data:>99999999}",
        "{data.order.id:x}",
        "{data[0]}",
        "{event.__globals__}",
        "{type.upper()}",
        "{data|exec}",
    ],
)
def test_templates_cannot_reach_python_internals(template: str) -> None:
    out = render(template, EVENT)
    assert out in ("", template), out  # empty (a missing key) or shown literally (not a placeholder)
    for leak in ("<", "class", "function", "method", "built-in", "dict_", "object at"):
        assert leak not in out.replace(template, "")


def test_data_is_never_rendered_twice() -> None:
    event = {**EVENT, "data": {"note": "{type} {__class__} {{"}}
    assert render("{data.note}", event) == "{type} {__class__} {{"


@pytest.mark.parametrize(
    "template", ["{nope}", "{data|exec}", "{data", "oops}", "{data..x}", "{data|trunc:0}", "{data|json:1}", "{}"]
)
def test_invalid_templates_are_refused_at_save_time(template: str) -> None:
    with pytest.raises(InvalidTemplate):
        validate_template(template)
    render(template, EVENT)  # ...and never break rendering


def test_template_output_is_capped() -> None:
    event = {**EVENT, "data": {"s": "x" * 50_000}}
    assert len(render("{data.s}" * 10, event)) == MAX_OUTPUT_CHARS
    assert compile_template("{type}") is compile_template("{type}")  # cached


# -- size limits -----------------------------------------------------------------------------------
def _slack_ratio(doc: dict[str, Any], body: bytes) -> float:
    sections = [len(b["text"]["text"]) / 3000 for b in doc["blocks"] if b["type"] == "section"]
    return max([len(doc["text"]) / 40_000, *sections])


LIMITS = {  # what the receiver measures, as a fraction of the platform's limit
    "slack": _slack_ratio,
    "discord": lambda doc, body: len(doc["content"]) / 2000,
    "teams": lambda doc, body: len(body) / 28_000,
    "dingtalk": lambda doc, body: len(body) / 20_000,
    "feishu": lambda doc, body: len(body) / 20_000,
    "wecom": lambda doc, body: len(doc["markdown"]["content"].encode()) / 2048,
}


@pytest.mark.parametrize("kind", sorted(LIMITS))
@pytest.mark.parametrize("size", [10, 1999, 2000, 2048, 3000, 20_000, 60_000])
@pytest.mark.parametrize("text", ["a", "é", "中", "🙂", "\n", '"', "\\"])
def test_bodies_never_exceed_the_platform_limit(kind: str, size: int, text: str) -> None:
    event = {**EVENT, "data": {"s": text * size}}
    req = get(kind).render(event, endpoint(kind, template="{data.s}", robot_secret=None), now=1_700_000_000.0)  # type: ignore[union-attr]
    doc = orjson.loads(req.body)
    assert LIMITS[kind](doc, req.body) <= 1.0
    if text.strip() and len(text.encode()) * size > 40_000:
        assert MARKER in req.body.decode()


def test_cut_bytes_never_splits_a_character() -> None:
    for n in range(len(MARKER.encode()) + 1, 40):
        out = cut_bytes("中文" * 50, n)
        assert len(out.encode()) <= n and out.endswith(MARKER)


# -- answers ---------------------------------------------------------------------------------------
def verdict(kind: str, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return get(kind).classify(status, headers or {}, raw)  # type: ignore[union-attr]


def test_error_codes_in_a_200() -> None:
    assert verdict("dingtalk", 200, {"errcode": 0, "errmsg": "ok"}).ok
    v = verdict("dingtalk", 200, {"errcode": 310000, "errmsg": "sign not match"})
    assert not v.ok and v.error == "errcode 310000: sign not match" and v.retry_after_s is None
    v = verdict("dingtalk", 200, {"errcode": 130101, "errmsg": "send too fast"})
    assert not v.ok and v.throttled and v.retry_after_s == 600
    assert verdict("wecom", 200, {"errcode": 0, "errmsg": "ok"}).ok
    assert verdict("wecom", 200, {"errcode": 45009, "errmsg": "api freq out of limit"}).retry_after_s == 60
    assert verdict("feishu", 200, {"code": 0, "msg": "success"}).ok
    assert verdict("feishu", 200, {"StatusCode": 0, "StatusMessage": "success"}).ok
    assert verdict("feishu", 200, {"code": 11232, "msg": "frequency limited"}).throttled
    assert not verdict("feishu", 200, {"code": 19021, "msg": "sign match fail"}).ok
    assert not verdict("feishu", 400, {"code": 9499, "msg": "Bad Request"}).ok
    for kind in ("dingtalk", "wecom", "feishu"):
        assert not verdict(kind, 200, b"<html>proxy</html>").ok  # no code: not known to be delivered
        assert not verdict(kind, 502, b"").ok


def test_discord_and_slack_and_teams_answers() -> None:
    assert verdict("discord", 204, b"").ok and verdict("slack", 200, b"ok").ok
    v = verdict("discord", 429, {"message": "You are being rate limited.", "retry_after": 64.57, "global": False})
    assert not v.ok and v.throttled and v.retry_after_s == 64.57
    assert verdict("discord", 429, b"", {"X-RateLimit-Reset-After": "2.5"}).retry_after_s == 2.5
    assert not verdict("slack", 400, b"invalid_blocks").ok
    assert verdict("teams", 200, b"1").ok and verdict("teams", 202, b"").ok
    throttled = b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with x"
    v = verdict("teams", 200, throttled)
    assert not v.ok and v.throttled and v.retry_after_s is not None and v.retry_after_s >= 10
    v = verdict("teams", 200, b"Webhook message delivery failed with error: ... HTTP error 400 with ContextId")
    assert not v.ok and not v.throttled


# -- endpoints -------------------------------------------------------------------------------------
def test_subscribe_detects_the_kind_and_takes_the_platform_rate(dsp: Dispatcher) -> None:
    ep = dsp.subscribe("https://hooks.slack.com/services/T/B/X")
    assert ep.kind == "slack" and ep.rate_limit_per_s == 1.0
    ep = dsp.subscribe("https://oapi.dingtalk.com/robot/send?access_token=t", robot_secret="SECabc123")
    assert ep.kind == "dingtalk" and ep.rate_limit_per_s == pytest.approx(20 / 60)
    assert dsp.subscribe("https://example.com/hooks").kind == "webhook"
    assert dsp.subscribe("https://example.com/hooks").rate_limit_per_s is None
    # an explicit kind overrides detection; an explicit rate overrides the platform's
    ep = dsp.subscribe("https://hooks.slack.com/services/T/B/X", kind="webhook")
    assert ep.kind == "webhook" and ep.rate_limit_per_s is None
    ep = dsp.subscribe("http://127.0.0.1:9/proxy", kind="feishu", rate_limit_per_s=0.5)
    assert ep.kind == "feishu" and ep.rate_limit_per_s == 0.5


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"kind": "telegram"}, "kind must be one of"),
        ({"kind": 3}, "kind must be one of"),
        ({"kind": "slack", "max_batch": 5}, "max_batch"),
        ({"kind": "slack", "robot_secret": "SECx"}, "robot_secret"),
        ({"kind": "webhook", "robot_secret": "SECx"}, "robot_secret"),
        ({"kind": "webhook", "template": "{type}"}, "template"),
        ({"kind": "slack", "template": "{nope}"}, "unknown name"),
        ({"kind": "slack", "template": 5}, "template"),
        ({"kind": "dingtalk", "robot_secret": "has space"}, "robot_secret"),
        ({"kind": "dingtalk", "robot_secret": ""}, "robot_secret"),
    ],
)
def test_invalid_robot_options_are_refused(dsp: Dispatcher, options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        dsp.subscribe("https://example.com/hooks", **options)
    assert dsp.list_endpoints() == []


def test_update_kind_template_and_secret(dsp: Dispatcher) -> None:
    ep = dsp.subscribe("https://hooks.slack.com/services/T/B/X", template="{type}")
    ep = dsp.update_endpoint(ep.id, url="https://discord.com/api/webhooks/1/x")  # a new platform's URL
    assert ep.kind == "discord" and ep.rate_limit_per_s == 2.0 and ep.template == "{type}"
    ep = dsp.update_endpoint(ep.id, kind="dingtalk", robot_secret="SECnew")
    assert ep.kind == "dingtalk" and ep.rate_limit_per_s == pytest.approx(20 / 60)
    ep = dsp.update_endpoint(ep.id, rate_limit_per_s=None)  # null: back to the platform's rate
    assert ep.rate_limit_per_s == pytest.approx(20 / 60)
    ep = dsp.update_endpoint(ep.id, rate_limit_per_s=0.1, template=None)
    assert ep.rate_limit_per_s == 0.1 and ep.template is None
    with pytest.raises(InvalidInput):
        dsp.update_endpoint(ep.id, kind="slack")  # robot_secret does not apply to Slack
    with pytest.raises(InvalidInput):
        dsp.update_endpoint(ep.id, kind="poll")
    with pytest.raises(InvalidInput):
        dsp.update_endpoint(ep.id, template="{broken")
    ep = dsp.update_endpoint(ep.id, kind="webhook", robot_secret=None, rate_limit_per_s=None)
    assert ep.kind == "webhook" and ep.rate_limit_per_s is None and ep.robot_secret is None


def test_robot_secret_is_masked_and_never_in_repr(dsp: Dispatcher) -> None:
    secret = "SEC" + "f" * 64
    ep = dsp.subscribe("https://oapi.dingtalk.com/robot/send?access_token=t", robot_secret=secret)
    assert ep.masked()["robot_secret"] == "SECf…"
    assert secret not in repr(ep) and secret not in str(ep.masked())
    assert dsp.get_endpoint(ep.id).robot_secret == secret


# -- API, CLI --------------------------------------------------------------------------------------
def test_api_creates_and_patches_robots(api: TestClient) -> None:
    body = {"url": "https://open.feishu.cn/open-apis/bot/v2/hook/x", "robot_secret": "feishu-secret-1",
            "template": "{type}: {data.id}"}  # fmt: skip
    resp = api.post("/v1/endpoints", json=body)
    assert resp.status_code == 201, resp.text
    ep = resp.json()
    assert ep["kind"] == "feishu" and ep["template"] == "{type}: {data.id}"
    assert ep["robot_secret"] == "feis…" and "feishu-secret-1" not in resp.text
    assert ep["rate_limit_per_s"] == pytest.approx(100 / 60)
    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"template": None, "kind": "feishu"})
    assert resp.status_code == 200 and resp.json()["template"] is None
    assert api.patch(f"/v1/endpoints/{ep['id']}", json={"kind": None}).status_code == 422
    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"kind": "irc"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_input"
    resp = api.post("/v1/endpoints", json={"url": "https://example.com/h", "kind": "slack", "template": "{x"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_input"
    listed = api.get("/v1/endpoints").json()["endpoints"]
    assert [e["robot_secret"] for e in listed] == ["feis…"]
    test = api.post(f"/v1/endpoints/{ep['id']}/test")
    assert test.status_code == 202


def test_cli_subscribe_robot(cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["subscribe", "https://oapi.dingtalk.com/robot/send?access_token=t",
                                 "--robot-secret", "SECcli-secret", "--template", "{type}!"])  # fmt: skip
    assert result.exit_code == 0, result.output
    ep = json.loads(result.stdout)
    assert ep["kind"] == "dingtalk" and ep["template"] == "{type}!" and ep["robot_secret"] == "SECc…"
    assert "SECcli-secret" not in result.output
    result = runner.invoke(cli, ["subscribe", "http://127.0.0.1:9/x", "--kind", "wecom", "--rate-limit", "0.5"])
    assert result.exit_code == 0, result.output
    ep = json.loads(result.stdout)
    assert ep["kind"] == "wecom" and ep["rate_limit_per_s"] == 0.5
    result = runner.invoke(cli, ["subscribe", "http://127.0.0.1:9/x", "--kind", "slack", "--template", "{bad"])
    assert result.exit_code == 2 and "Error:" in result.stderr


def test_web_form_offers_the_kinds_and_lists_a_robot(dsp: Dispatcher, api_factory: Callable[..., TestClient]) -> None:
    dsp.subscribe("https://discord.com/api/webhooks/1/x", ["*"])
    page = api_factory(auth=False, api_keys=(), api_insecure_no_auth=True, api_allowed_hosts=("testserver",)).get("/")
    assert page.status_code == 200
    assert '<select id="kind" name="kind">' in page.text
    assert '<option value="">Auto-detect from the URL</option>' in page.text
    for kind in ROBOT_KINDS:
        assert f'<option value="{kind}">' in page.text
    assert 'id="robot-secret"' in page.text and 'id="template"' in page.text
    assert '<span class="badge">discord</span>' in page.text and "at most 2/s" in page.text
