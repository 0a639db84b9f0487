"""Records: secrets stay out of masked views, reprs and logs."""

from __future__ import annotations

import pytest

from dispatcher.models import Attempt, Delivery, DeliveryState, Endpoint
from dispatcher.signing import generate_secret


def _endpoint(secret: str) -> Endpoint:
    return Endpoint(id="ep_1", url="https://hooks.example.com/x", event_types=["order.*"], secret=secret)


@pytest.fixture
def secret() -> str:
    return generate_secret()


def test_masked_hides_the_secret(secret: str) -> None:
    ep = _endpoint(secret)
    masked = ep.masked()
    assert masked["secret"] != secret
    assert secret not in str(masked)
    assert secret[len("whsec_") :] not in str(masked)  # the key material is gone
    assert masked["secret"].startswith("whsec_")
    assert masked["secret"].endswith("…")
    assert len(masked["secret"]) < 12  # only a short hint survives
    assert ep.secret == secret  # the model itself is untouched


def test_masked_keeps_everything_else(secret: str) -> None:
    ep = _endpoint(secret)
    masked = ep.masked()
    full = ep.model_dump()
    assert set(masked) == set(full) | {"warnings"}  # what the save had to say (never stored) is shown too
    assert masked["warnings"] == []
    assert {k: v for k, v in masked.items() if k not in ("secret", "warnings")} == {
        k: v for k, v in full.items() if k != "secret"
    }


@pytest.mark.parametrize(
    ("url", "kind", "shown"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXX", "slack", "https://hooks.slack.com/services/…"),
        ("https://oapi.dingtalk.com/robot/send?access_token=abc", "dingtalk", "https://oapi.dingtalk.com/robot/…?…"),
        ("https://discord.com/api/webhooks/1/token", "discord", "https://discord.com/api/…"),
        ("https://example.com/hooks?token=1", "webhook", "https://example.com/hooks?…"),
        ("https://example.com/a/b", "webhook", "https://example.com/a/b"),
    ],
)
def test_masked_hides_what_in_a_url_can_be_a_credential(url: str, kind: str, shown: str, secret: str) -> None:
    ep = Endpoint(id="ep_1", url=url, event_types=["*"], secret=secret, kind=kind)
    assert ep.masked()["url"] == shown and ep.url == url


def test_masked_empty_secret() -> None:
    assert _endpoint("").masked()["secret"] == ""


def test_repr_and_str_do_not_contain_the_secret(secret: str) -> None:
    ep = _endpoint(secret)
    for text in (repr(ep), str(ep), f"{ep}", f"{ep!r}"):
        assert secret not in text
        assert secret[len("whsec_") :] not in text
        assert "ep_1" in text


def test_extra_fields_are_ignored(secret: str) -> None:
    ep = Endpoint.model_validate(
        {"id": "ep_1", "url": "https://x.example/", "event_types": ["*"], "secret": secret, "unknown": 1}
    )
    assert not hasattr(ep, "unknown")
    assert ep.enabled is True and ep.max_batch == 1


def test_delivery_defaults() -> None:
    d = Delivery(id="dlv_1", event_id="msg_1", endpoint_id="ep_1", state="pending")  # type: ignore[arg-type]
    assert d.state is DeliveryState.PENDING
    assert d.attempts == []
    d.attempts.append(Attempt(n=1, at=1.0, status=500))
    assert Delivery(id="dlv_2", event_id="msg_1", endpoint_id="ep_1", state=DeliveryState.DEAD).attempts == []
