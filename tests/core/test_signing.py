"""Standard Webhooks signing: the published test vector, secrets, headers and interop with the reference library."""

from __future__ import annotations

import base64
import re
import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatcher.signing import (
    SECRET_PREFIX,
    generate_secret,
    secret_key,
    sign,
    signature_header,
    webhook_headers,
)

# https://github.com/standard-webhooks/standard-webhooks (spec test vector)
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

ID_ALPHABET = string.ascii_letters + string.digits + "_-"


def _secret_for(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode()


def test_standard_webhooks_test_vector() -> None:
    assert sign(secret_key(VECTOR_SECRET), VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_test_vector_through_headers() -> None:
    headers = webhook_headers([secret_key(VECTOR_SECRET)], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert headers == {
        "content-type": "application/json",
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIG,
    }


def test_signature_depends_on_every_input() -> None:
    key = secret_key(VECTOR_SECRET)
    assert sign(key, VECTOR_ID + "x", VECTOR_TS, VECTOR_BODY) != VECTOR_SIG
    assert sign(key, VECTOR_ID, VECTOR_TS + 1, VECTOR_BODY) != VECTOR_SIG
    assert sign(key, VECTOR_ID, VECTOR_TS, VECTOR_BODY + b" ") != VECTOR_SIG
    # (appending b"\x00" would not do: HMAC zero-pads short keys)
    assert sign(bytes([key[0] ^ 1]) + key[1:], VECTOR_ID, VECTOR_TS, VECTOR_BODY) != VECTOR_SIG


def test_generate_secret_format() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{32}", secret)  # 24 bytes -> 32 base64 chars, no padding
    assert len(base64.b64decode(secret[len("whsec_") :], validate=True)) == 24
    assert len(secret_key(secret)) == 24


def test_generate_secret_custom_size() -> None:
    assert len(secret_key(generate_secret(32))) == 32


def test_generate_secret_is_unique() -> None:
    secrets = {generate_secret() for _ in range(200)}
    assert len(secrets) == 200


def test_secret_key_accepts_with_and_without_prefix() -> None:
    key = b"0123456789abcdefghijklmn"
    raw = base64.b64encode(key).decode()
    assert secret_key("whsec_" + raw) == key
    assert secret_key(raw) == key


def test_secret_key_accepts_unpadded_base64_as_the_reference_does() -> None:
    key = b"0123456789abcdefghijklm"  # 23 bytes: the base64 ends in one "="
    padded = base64.b64encode(key).decode()
    assert padded.endswith("=")
    for secret in (padded, padded.rstrip("="), "whsec_" + padded.rstrip("="), padded + "=", f" whsec_{padded}\n"):
        assert secret_key(secret) == key


@pytest.mark.parametrize(
    "bad",
    [
        "whsec_",  # empty
        "",  # empty
        "whsec_not base64!",
        "whsec_***",
        "whsec_abcde",  # one character too many for base64
        "whsec_@@@@",
    ],
)
def test_secret_key_rejects_bad_secrets(bad: str) -> None:
    with pytest.raises(ValueError):
        secret_key(bad)


def test_signature_header_with_two_keys() -> None:
    k1, k2 = b"k" * 24, b"j" * 24
    header = signature_header([k1, k2], "msg_1", 1700000000, b"{}")
    parts = header.split(" ")
    assert len(parts) == 2
    assert all(p.startswith("v1,") for p in parts)
    assert parts[0] == sign(k1, "msg_1", 1700000000, b"{}")
    assert parts[1] == sign(k2, "msg_1", 1700000000, b"{}")
    assert parts[0] != parts[1]


def test_headers_verify_with_standardwebhooks() -> None:
    secret = generate_secret()
    body = b'{"id":"msg_1","type":"order.paid","data":{"n":1}}'
    headers = webhook_headers([secret_key(secret)], "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"id": "msg_1", "type": "order.paid", "data": {"n": 1}}


def test_headers_verify_with_either_key_during_rotation() -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"rotated":true}'
    headers = webhook_headers([secret_key(new), secret_key(old)], "msg_rot", int(time.time()), body)
    assert Webhook(old).verify(body, headers) == {"rotated": True}
    assert Webhook(new).verify(body, headers) == {"rotated": True}
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_tampered_body_does_not_verify() -> None:
    secret = generate_secret()
    headers = webhook_headers([secret_key(secret)], "msg_1", int(time.time()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)


@settings(max_examples=150, deadline=None)
@given(
    body=st.text(max_size=300).map(str.encode),
    msg_id=st.text(alphabet=ID_ALPHABET, min_size=1, max_size=40),
    keys=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=3),
    pick=st.integers(min_value=0),
)
def test_signature_verifies_with_standardwebhooks(body: bytes, msg_id: str, keys: list[bytes], pick: int) -> None:
    headers = webhook_headers(keys, msg_id, int(time.time()), body)
    secret = _secret_for(keys[pick % len(keys)])
    assert secret_key(secret) == keys[pick % len(keys)]
    Webhook(secret).verify(body, headers, json_parse=False)  # raises on mismatch
