"""Receiver-side verification: the published vector, every failure, rotation, interop with standardwebhooks/svix,
a round-trip property, and replay protection with SeenIds on a real Redis."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from hypothesis import event, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

import dispatcher
from dispatcher.errors import (
    AlreadyProcessed,
    DispatcherError,
    InvalidPayload,
    InvalidSecret,
    InvalidSignature,
    MalformedHeader,
    MissingHeader,
    RawBodyRequired,
    TimestampTooNew,
    TimestampTooOld,
    VerificationError,
)
from dispatcher.receiver.verify import DEFAULT_SEEN_TTL_S, SeenIds, verify, webhook_id
from dispatcher.signing import generate_secret, secret_key, sign, webhook_headers

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_HEADERS = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG}


def signed(secret: str, body: bytes, msg_id: str = "msg_1", ts: int | None = None) -> dict[str, str]:
    return webhook_headers([secret_key(secret)], msg_id, int(time.time()) if ts is None else ts, body)


# -- the published test vector ------------------------------------------------------------------------
def test_published_vector_verifies() -> None:
    assert verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS) == {"test": 2432232314}


def test_exported_from_package() -> None:
    assert dispatcher.verify is verify
    assert dispatcher.SeenIds is SeenIds
    for err in (
        MissingHeader,
        InvalidSignature,
        TimestampTooOld,
        TimestampTooNew,
        InvalidPayload,
        AlreadyProcessed,
        InvalidSecret,
        RawBodyRequired,
    ):
        assert issubclass(err, VerificationError)
        assert getattr(dispatcher, err.__name__) is err
        assert err.__doc__ and err.__doc__.startswith("Raised when")
    assert issubclass(VerificationError, DispatcherError)


def test_vector_within_tolerance_either_side() -> None:
    assert verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS + 300) == {"test": 2432232314}
    assert verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS - 300) == {"test": 2432232314}


def test_vector_too_old() -> None:
    with pytest.raises(TimestampTooOld, match="301 s old"):
        verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS + 301)
    with pytest.raises(TimestampTooOld):
        verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET)  # today's clock: years old


def test_vector_too_new() -> None:
    with pytest.raises(TimestampTooNew):
        verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS - 301)


def test_custom_tolerance() -> None:
    assert verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS + 3000, tolerance_s=3600)
    with pytest.raises(TimestampTooOld):
        verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS + 11, tolerance_s=10)
    with pytest.raises(ValueError):
        verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS, tolerance_s=-1)


def test_tampered_body() -> None:
    with pytest.raises(InvalidSignature):
        verify(b'{"test": 2432232315}', VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS)


def test_reserialised_body_does_not_verify() -> None:
    reencoded = json.dumps(json.loads(VECTOR_BODY), separators=(",", ":")).encode()
    assert reencoded != VECTOR_BODY
    with pytest.raises(InvalidSignature, match="raw bytes"):
        verify(reencoded, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS)


def test_tampered_id_and_timestamp() -> None:
    with pytest.raises(InvalidSignature):
        verify(VECTOR_BODY, {**VECTOR_HEADERS, "webhook-id": VECTOR_ID + "x"}, VECTOR_SECRET, now=VECTOR_TS)
    with pytest.raises(InvalidSignature):  # a shifted timestamp no longer matches: checked before the window
        verify(VECTOR_BODY, {**VECTOR_HEADERS, "webhook-timestamp": str(VECTOR_TS + 1)}, VECTOR_SECRET, now=VECTOR_TS)


def test_wrong_secret() -> None:
    with pytest.raises(InvalidSignature):
        verify(VECTOR_BODY, VECTOR_HEADERS, generate_secret(), now=VECTOR_TS)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header(header: str) -> None:
    headers = {k: v for k, v in VECTOR_HEADERS.items() if k != header}
    with pytest.raises(MissingHeader, match=header):
        verify(VECTOR_BODY, headers, VECTOR_SECRET, now=VECTOR_TS)
    with pytest.raises(MissingHeader):
        verify(VECTOR_BODY, {**VECTOR_HEADERS, header: "  "}, VECTOR_SECRET, now=VECTOR_TS)


@pytest.mark.parametrize("value", ["abc", "1614265330.5", "-1614265330", "1_614_265_330", "١٦١٤٢٦٥٣٣٠"])
def test_malformed_timestamp(value: str) -> None:
    with pytest.raises(MalformedHeader):
        verify(VECTOR_BODY, {**VECTOR_HEADERS, "webhook-timestamp": value}, VECTOR_SECRET, now=VECTOR_TS)
    assert issubclass(MalformedHeader, MissingHeader)


@pytest.mark.parametrize("value", ["v1", "v2," + VECTOR_SIG[3:], "v1,not-base64!", "v1a,abcd", "g0hM9SsE"])
def test_signature_header_without_a_usable_v1_signature(value: str) -> None:
    with pytest.raises(InvalidSignature):
        verify(VECTOR_BODY, {**VECTOR_HEADERS, "webhook-signature": value}, VECTOR_SECRET, now=VECTOR_TS)


def test_headers_are_case_insensitive() -> None:
    headers = {k.upper() if i % 2 else k.title(): v for i, (k, v) in enumerate(VECTOR_HEADERS.items())}
    assert verify(VECTOR_BODY, headers, VECTOR_SECRET, now=VECTOR_TS) == {"test": 2432232314}


def test_svix_header_names() -> None:
    headers = {"Svix-Id": VECTOR_ID, "svix-timestamp": str(VECTOR_TS), "SVIX-SIGNATURE": VECTOR_SIG}
    assert verify(VECTOR_BODY, headers, VECTOR_SECRET, now=VECTOR_TS) == {"test": 2432232314}
    assert webhook_id(headers) == VECTOR_ID


def test_secret_without_prefix() -> None:
    assert verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET.removeprefix("whsec_"), now=VECTOR_TS)


def test_bad_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):  # InvalidSecret is still the ValueError it used to be
        verify(VECTOR_BODY, VECTOR_HEADERS, "whsec_***", now=VECTOR_TS)
    with pytest.raises(ValueError):
        verify(VECTOR_BODY, VECTOR_HEADERS, [], now=VECTOR_TS)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsec_***", "standard base64"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwx", "one more than a multiple of 4"),
        ('"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"', "standard base64"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8I-PZIo2LaLaSw", "standard base64"),  # urlsafe alphabet
        ("whsec_", "no key bytes"),
        ("", "no key bytes"),
        (b"", "empty bytes"),
        ([], "no secret given"),
        ([VECTOR_SECRET, 42], "secret #2 of 2 is of type int"),
        (None, "is of type NoneType"),
    ],
)
def test_bad_secret_raises_invalid_secret(secret: Any, message: str) -> None:
    with pytest.raises(InvalidSecret, match=message) as info:
        verify(VECTOR_BODY, VECTOR_HEADERS, secret, now=VECTOR_TS)
    assert isinstance(info.value, VerificationError) and info.value.http_status == 500
    if isinstance(secret, str) and len(secret) > 8:
        assert secret.strip('"')[6:] not in str(info.value)  # the secret never shows in the message


def test_secret_forms_the_reference_accepts() -> None:
    raw = VECTOR_SECRET.removeprefix("whsec_")  # 32 characters: no padding either way
    key = base64.b64decode(raw)
    unpadded_key = key[:-1]  # 23 bytes: base64 ends in "="
    padded = base64.b64encode(unpadded_key).decode()
    assert padded.endswith("=")
    headers = webhook_headers([unpadded_key], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    for secret in (padded, padded.rstrip("="), "whsec_" + padded, "whsec_" + padded.rstrip("="), unpadded_key):
        assert Webhook(secret)._whsecret == unpadded_key
        assert verify(VECTOR_BODY, headers, secret, now=VECTOR_TS) == {"test": 2432232314}
    assert verify(VECTOR_BODY, VECTOR_HEADERS, f"  {VECTOR_SECRET}\n", now=VECTOR_TS)  # read from a file


# -- rotation: several secrets, several signatures -----------------------------------------------------
def test_any_of_several_secrets() -> None:
    others = [generate_secret(), generate_secret()]
    for secrets in ([*others, VECTOR_SECRET], [VECTOR_SECRET, *others], (others[0], VECTOR_SECRET)):
        assert verify(VECTOR_BODY, VECTOR_HEADERS, secrets, now=VECTOR_TS) == {"test": 2432232314}
    with pytest.raises(InvalidSignature):
        verify(VECTOR_BODY, VECTOR_HEADERS, others, now=VECTOR_TS)


def test_any_of_several_signatures() -> None:
    old, new, unrelated = generate_secret(), generate_secret(), generate_secret()
    body = b'{"rotated": true}'
    ts = int(time.time())
    headers = webhook_headers([secret_key(new), secret_key(old)], "msg_rot", ts, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(body, headers, old) == {"rotated": True}
    assert verify(body, headers, new) == {"rotated": True}
    assert verify(body, headers, [unrelated, old]) == {"rotated": True}
    with pytest.raises(InvalidSignature):
        verify(body, headers, unrelated)


def test_unknown_signature_versions_are_skipped() -> None:
    header = f"v1a,c29tZXRoaW5n v2,abc {VECTOR_SIG}"
    assert verify(VECTOR_BODY, {**VECTOR_HEADERS, "webhook-signature": header}, VECTOR_SECRET, now=VECTOR_TS)


# -- the raw body ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [{"test": 2432232314}, None, 42, [VECTOR_BODY]])
def test_non_body_payload_is_refused(payload: Any) -> None:
    with pytest.raises(RawBodyRequired, match="raw request body") as info:
        verify(payload, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS)
    assert isinstance(info.value, VerificationError) and info.value.http_status == 400
    assert isinstance(info.value, TypeError)  # what it was before it became a VerificationError
    assert "request.get_data()" in str(info.value) and "request.body" in str(info.value)


def test_str_payload_is_checked_as_utf8() -> None:
    assert verify(VECTOR_BODY.decode(), VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS) == {"test": 2432232314}
    secret = generate_secret()
    body = '{"name": "Zoë ☃ 🎉"}'
    headers = signed(secret, body.encode())
    assert verify(body, headers, secret) == verify(body.encode(), headers, secret) == {"name": "Zoë ☃ 🎉"}
    with pytest.raises(InvalidSignature):
        verify(body.encode("latin-1", "replace"), headers, secret)
    with pytest.raises(RawBodyRequired, match="lone surrogates") as info:
        verify('{"a": "\udcff"}', headers, secret)
    assert isinstance(info.value, VerificationError)


def test_bytes_like_payloads() -> None:
    assert verify(bytearray(VECTOR_BODY), VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS) == {"test": 2432232314}  # type: ignore[arg-type]
    assert verify(memoryview(VECTOR_BODY), VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS) == {"test": 2432232314}  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [b"not json", b'{"a":', b"\xff\xfe{}", b"42", b'"text"', b"null"])
def test_signed_but_not_a_json_object(body: bytes) -> None:
    secret = generate_secret()
    with pytest.raises(InvalidPayload):
        verify(body, signed(secret, body), secret)


def test_batch_body_is_a_list() -> None:
    secret = generate_secret()
    body = b'[{"id":"msg_1","type":"a","data":{}},{"id":"msg_2","type":"b","data":{}}]'
    assert [e["id"] for e in verify(body, signed(secret, body, "batch_x"), secret)] == ["msg_1", "msg_2"]


def test_http_status_hints() -> None:
    assert MissingHeader.http_status == 400
    assert InvalidPayload.http_status == 400
    assert InvalidSignature.http_status == 401
    assert TimestampTooOld.http_status == TimestampTooNew.http_status == 401
    assert AlreadyProcessed.http_status == 200


# -- interop with the public libraries -------------------------------------------------------------------
def test_our_headers_verify_with_standardwebhooks_and_svix() -> None:
    from svix.webhooks import Webhook as SvixWebhook

    secret = generate_secret()
    body = b'{"id":"msg_1","type":"order.paid","data":{"n":1}}'
    headers = signed(secret, body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    SvixWebhook(secret).verify(body, headers)  # raises on mismatch
    assert verify(body, headers, secret) == json.loads(body)


def test_we_accept_what_standardwebhooks_signs() -> None:
    secret = generate_secret()
    body = '{"type": "user.created", "data": {"id": 7}}'
    at = datetime.now(tz=UTC)
    signature = Webhook(secret).sign("msg_std", at, body)
    headers = {"webhook-id": "msg_std", "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}
    assert verify(body.encode(), headers, secret) == {"type": "user.created", "data": {"id": 7}}


def test_we_accept_what_svix_signs_with_svix_headers() -> None:
    from svix.webhooks import Webhook as SvixWebhook

    secret = generate_secret()
    body = '{"type": "invoice.paid", "data": {"amount": 12}}'
    at = datetime.now(tz=UTC)
    signature = SvixWebhook(secret).sign("msg_svix", at, body)
    headers = {"svix-id": "msg_svix", "svix-timestamp": str(int(at.timestamp())), "svix-signature": signature}
    assert verify(body.encode(), headers, secret) == {"type": "invoice.paid", "data": {"amount": 12}}
    with pytest.raises(InvalidSignature):
        verify(body.encode() + b" ", headers, secret)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    msg_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40),
    keys=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=3),
    pick=st.integers(min_value=0),
    skew=st.integers(min_value=-300, max_value=300),
    indent=st.sampled_from([None, 2]),
)
def test_round_trip(
    data: dict[str, Any], msg_id: str, keys: list[bytes], pick: int, skew: int, indent: int | None
) -> None:
    body = json.dumps(data, indent=indent, ensure_ascii=False).encode()
    ts = 1_700_000_000
    headers = webhook_headers(keys, msg_id, ts, body)
    secret = "whsec_" + base64.b64encode(keys[pick % len(keys)]).decode()
    assert verify(body, headers, secret, now=ts + skew) == data
    with pytest.raises(InvalidSignature):
        verify(body + b" ", headers, secret, now=ts)


def test_sign_matches_the_header_we_check() -> None:
    key = secret_key(VECTOR_SECRET)
    assert sign(key, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


# -- replay protection on a real Redis -------------------------------------------------------------------
@pytest.fixture
def seen_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_seen_ids_first_time(seen_client: redis.Redis, prefix: str) -> None:
    seen = SeenIds(seen_client, prefix=prefix + "seen:", ttl_s=120)
    assert seen.first_time("msg_a") is True
    assert seen.first_time("msg_a") is False
    assert seen.first_time("msg_b") is True
    assert seen.seen("msg_a") and not seen.seen("msg_c")
    ttl = seen_client.ttl(prefix + "seen:msg_a")
    assert 0 < ttl <= 120


def test_seen_ids_forget_and_mark(seen_client: redis.Redis, prefix: str) -> None:
    seen = SeenIds(seen_client, prefix=prefix + "seen:")
    assert seen.ttl_s == DEFAULT_SEEN_TTL_S == 660
    assert seen.first_time("msg_a")
    seen.forget("msg_a")
    assert not seen.seen("msg_a")
    assert seen.first_time("msg_a")
    seen.mark("msg_m")
    assert seen.seen("msg_m") and not seen.first_time("msg_m")


def test_seen_ids_expire(seen_client: redis.Redis, prefix: str) -> None:
    seen = SeenIds(seen_client, prefix=prefix + "seen:", ttl_s=1)
    assert seen.first_time("msg_exp")
    deadline = time.monotonic() + 5
    while seen.seen("msg_exp") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert seen.first_time("msg_exp")


def test_seen_ids_rejects_bad_ttl(seen_client: redis.Redis) -> None:
    with pytest.raises(ValueError):
        SeenIds(seen_client, ttl_s=0)


def test_verify_with_seen_raises_already_processed(seen_client: redis.Redis, prefix: str) -> None:
    seen = SeenIds(seen_client, prefix=prefix + "seen:")
    assert verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS, seen=seen) == {"test": 2432232314}
    with pytest.raises(AlreadyProcessed, match=VECTOR_ID):
        verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS, seen=seen)
    seen.forget(VECTOR_ID)  # processing failed: the sender's retry goes through again
    assert verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS, seen=seen)


def test_failed_verification_does_not_claim_the_id(seen_client: redis.Redis, prefix: str) -> None:
    seen = SeenIds(seen_client, prefix=prefix + "seen:")
    with pytest.raises(InvalidSignature):  # a forger who knows an id cannot burn it
        verify(b'{"forged": 1}', VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS, seen=seen)
    with pytest.raises(TimestampTooOld):
        verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS + 1000, seen=seen)
    assert not seen.seen(VECTOR_ID)
    assert verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_SECRET, now=VECTOR_TS, seen=seen)


def test_seen_ids_refuses_an_async_client(redis_url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    with pytest.raises(TypeError, match="synchronous"):
        SeenIds(client).first_time("msg_async")


# -- differential: accepted exactly when the reference standardwebhooks library accepts --------------------
def reference_accepts(body: bytes | str, headers: dict[str, str], secrets: list[str | bytes]) -> tuple[bool, Any]:
    """Whether ``standardwebhooks.Webhook(s).verify`` accepts under any of ``secrets``, and what it returns."""
    for secret in secrets:
        try:
            return True, Webhook(secret).verify(body, headers)
        except Exception:  # it refuses with WebhookVerificationError, and trips with others on odd input
            continue
    return False, None


def encode_secret(key: bytes, form: str) -> str | bytes:
    text = base64.b64encode(key).decode()
    return {
        "whsec_padded": "whsec_" + text,
        "whsec_unpadded": "whsec_" + text.rstrip("="),
        "padded": text,
        "unpadded": text.rstrip("="),
        "raw_bytes": key,
    }[form]


TAMPERINGS = [
    "none",
    "body",
    "id",
    "timestamp",
    "signature_bit",
    "signature_dropped",
    "too_old",
    "too_new",
    "wrong_version",
]


@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(
        st.dictionaries(st.text(max_size=10), json_values, max_size=5),
        st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=3), min_size=1, max_size=3),
    ),
    ascii_only=st.booleans(),
    as_str=st.booleans(),
    msg_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789_-", min_size=1, max_size=30),
    signing_keys=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=3, unique=True),
    other_keys=st.lists(st.binary(min_size=1, max_size=40), max_size=2),
    use_signing=st.lists(st.booleans(), min_size=3, max_size=3),
    forms=st.lists(
        st.sampled_from(["whsec_padded", "whsec_unpadded", "padded", "unpadded", "raw_bytes"]), min_size=5, max_size=5
    ),
    decoys=st.integers(min_value=0, max_value=2),
    skew=st.integers(min_value=-240, max_value=240),
    tamper=st.sampled_from(TAMPERINGS),
    where=st.integers(min_value=0),
)
def test_accepts_exactly_what_standardwebhooks_accepts(
    data: Any,
    ascii_only: bool,
    as_str: bool,
    msg_id: str,
    signing_keys: list[bytes],
    other_keys: list[bytes],
    use_signing: list[bool],
    forms: list[str],
    decoys: int,
    skew: int,
    tamper: str,
    where: int,
) -> None:
    text = json.dumps(data, ensure_ascii=ascii_only)
    ts = int(time.time()) + skew
    # the reference library signs: several signatures in one header, plus decoys under keys nobody holds
    at = datetime.fromtimestamp(ts, tz=UTC)
    signatures = [Webhook(key).sign(msg_id, at, text) for key in signing_keys]
    signatures += [Webhook(bytes([n + 1]) * 24).sign(msg_id, at, text) for n in range(decoys)]
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": " ".join(signatures)}

    if tamper == "body":
        text = text[:-1] + (" " if text[-1] != " " else "") + text[-1]  # same JSON, other bytes
    elif tamper == "id":
        headers["webhook-id"] = msg_id + "x"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(ts + 1)
    elif tamper == "signature_bit":
        i = where % len(signatures)
        digest = bytearray(base64.b64decode(signatures[i][3:]))
        digest[where % len(digest)] ^= 1 << (where % 8)
        signatures[i] = "v1," + base64.b64encode(bytes(digest)).decode()
        headers["webhook-signature"] = " ".join(signatures)
    elif tamper == "signature_dropped":
        headers["webhook-signature"] = " ".join(signatures[len(signing_keys) :]) or "v1,AAAA"
    elif tamper in ("too_old", "too_new"):  # well outside the 300 s either way, correctly signed
        moved = ts + (-1000 if tamper == "too_old" else 1000)
        headers["webhook-timestamp"] = str(moved)
        at = datetime.fromtimestamp(moved, tz=UTC)
        headers["webhook-signature"] = " ".join(Webhook(key).sign(msg_id, at, text) for key in signing_keys)
    elif tamper == "wrong_version":
        headers["webhook-signature"] = " ".join("v2," + s[3:] for s in signatures)

    # the receiver holds some of the signing keys (or none), and maybe keys that signed nothing
    held = [key for key, use in zip(signing_keys, use_signing, strict=False) if use] + other_keys
    secrets = [encode_secret(key, forms[i % len(forms)]) for i, key in enumerate(held)] or [b"nobody's key"]
    body: bytes | str = text if as_str else text.encode()

    accepted, expected = reference_accepts(body, headers, secrets)
    event("accepted" if accepted else f"refused ({tamper})")
    if accepted:
        assert verify(body, headers, secrets) == expected == data
        assert verify(body, headers, secrets[0] if len(secrets) == 1 else secrets) == data
    else:
        with pytest.raises(VerificationError):
            verify(body, headers, secrets)
