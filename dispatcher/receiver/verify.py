"""Receiver side: verify a Standard Webhooks request and, optionally, refuse a webhook-id seen before.

``verify(raw_body, headers, secret)`` checks the ``webhook-*`` headers (or the ``svix-*`` ones Svix
sends) against the **raw** request body and returns the parsed JSON, or raises a subclass of
``VerificationError`` -- every error it raises for a bad request or a bad argument is one, each with the
answer to give in ``http_status``:

- ``MissingHeader`` (``MalformedHeader``): a header is absent, empty or unusable -> answer 400;
- ``InvalidSignature``: no signature matches under any secret -> 401;
- ``TimestampTooOld`` / ``TimestampTooNew``: correctly signed but outside ``tolerance_s`` -> 401;
- ``InvalidPayload``: correctly signed but not UTF-8 JSON holding an object or array -> 400;
- ``AlreadyProcessed`` (only with ``seen=``): the webhook-id was seen before -> answer 2xx, skip it;
- ``InvalidSecret``: a secret is not ``whsec_`` + base64, or none was given -> 500 (the receiver's
  configuration is at fault, not the request; the sender retries until it is fixed). Also a ``ValueError``;
- ``RawBodyRequired``: the payload is a dict, ``None`` or another object rather than the body -> 400.
  Also a ``TypeError``, which it used to be only.

It accepts what the reference ``standardwebhooks`` library accepts: the body as ``bytes`` or as ``str``
(encoded as UTF-8 to check it); a secret with or without ``whsec_``, base64 padded or not (or the raw key
as ``bytes``); several space-separated signatures in one header (any may match; other versions are
skipped); and, beyond it, several secrets (rotation: any may match). Where the two differ it is on
purpose, for inputs the Standard Webhooks specification does not allow: a webhook-timestamp must be
integer seconds (the reference also takes ``1.5e9``), a header of blanks counts as absent, the body must
be a JSON object or array (the reference returns a bare ``42`` too), and a secret holding characters
outside base64 is refused with ``InvalidSecret`` (the reference drops them and verifies with a key nobody
meant). It also takes ``svix-*`` headers and signature lists the reference trips over (blank or unknown
parts are skipped). A signature covers the exact bytes sent: pass the body as received, never a
re-serialised one (re-encoding JSON changes whitespace and key order).

Replay protection and duplicates: the sender retries a delivery under the same webhook-id until it gets
a 2xx, so a receiver sees each message *at least once*. ``SeenIds`` remembers ids in Redis (``SET NX
EX``). Two ways to use it:

- claim on receipt, release on failure: ``verify(..., seen=seen_ids)`` claims the id after every other
  check passed and raises ``AlreadyProcessed`` for a repeat; if processing then fails, call
  ``seen_ids.forget(webhook_id)`` so the sender's retry is processed (the framework helpers in
  ``dispatcher.integrations`` do this for you when the view raises). This also stops an attacker who
  captured a request from replaying it inside the timestamp tolerance.
- mark after success: ``if seen_ids.seen(id): return 200``; process; ``seen_ids.mark(id)``. Nothing is
  lost if processing dies half way, but two concurrent copies can both be processed.

``ttl_s`` bounds how long an id is remembered. The default (twice the tolerance plus a minute) is enough
against replays, since an older timestamp is refused anyway. To also absorb the dispatcher's own retries
(same id, fresh timestamp, up to about 27.5 hours later), pass a ``ttl_s`` of at least that, e.g. two days.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from dispatcher.errors import (
    AlreadyProcessed,
    InvalidPayload,
    InvalidSecret,
    InvalidSignature,
    MalformedHeader,
    MissingHeader,
    RawBodyRequired,
    TimestampTooNew,
    TimestampTooOld,
)
from dispatcher.signing import secret_key

DEFAULT_TOLERANCE_S = 300
DEFAULT_SEEN_TTL_S = 2 * DEFAULT_TOLERANCE_S + 60
SIGNATURE_VERSION = "v1"

ID_HEADERS = ("webhook-id", "svix-id")
TIMESTAMP_HEADERS = ("webhook-timestamp", "svix-timestamp")
SIGNATURE_HEADERS = ("webhook-signature", "svix-signature")


class RedisLike(Protocol):
    """The part of a synchronous ``redis.Redis`` client that ``SeenIds`` uses."""

    def set(self, name: str, value: str, *, ex: int | None = ..., nx: bool = ...) -> Any: ...

    def exists(self, *names: str) -> Any: ...

    def delete(self, *names: str) -> Any: ...


class SeenIds:
    """Webhook-ids seen recently, in Redis under ``prefix + webhook_id`` for ``ttl_s`` seconds."""

    def __init__(self, redis_client: RedisLike, prefix: str = "whd-seen:", ttl_s: int = DEFAULT_SEEN_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.redis = redis_client
        self.prefix = prefix
        self.ttl_s = int(ttl_s)

    def key(self, webhook_id: str) -> str:
        """The Redis key that remembers ``webhook_id``."""
        return self.prefix + webhook_id

    def first_time(self, webhook_id: str) -> bool:
        """Claim ``webhook_id`` atomically (SET NX EX): True the first time, False for every repeat."""
        return bool(self._sync(self.redis.set(self.key(webhook_id), "1", ex=self.ttl_s, nx=True)))

    def seen(self, webhook_id: str) -> bool:
        """Whether ``webhook_id`` is remembered, without claiming it."""
        return bool(self._sync(self.redis.exists(self.key(webhook_id))))

    def mark(self, webhook_id: str) -> None:
        """Remember ``webhook_id`` (e.g. after it was processed successfully); refreshes the expiry."""
        self._sync(self.redis.set(self.key(webhook_id), "1", ex=self.ttl_s))

    def forget(self, webhook_id: str) -> None:
        """Release ``webhook_id`` so the sender's next retry is processed (call it when processing failed)."""
        self._sync(self.redis.delete(self.key(webhook_id)))

    @staticmethod
    def _sync(result: Any) -> Any:
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # don't leave a never-awaited coroutine behind
            raise TypeError("SeenIds needs a synchronous redis client (redis.Redis), not redis.asyncio")
        return result


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names folded to lower case; the first occurrence of a name wins."""
    folded: dict[str, str] = {}
    for name, value in headers.items():
        folded.setdefault(str(name).lower(), value)
    return folded


def _header(headers: dict[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        value = headers.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    raise MissingHeader(f"missing {names[0]} header (or {' / '.join(names[1:])})")


def webhook_id(headers: Mapping[str, str]) -> str:
    """The ``webhook-id`` (or ``svix-id``) of a request, looked up case-insensitively; ``MissingHeader`` if absent."""
    return _header(_lower_headers(headers), ID_HEADERS)


def _keys(secret: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """The HMAC keys of one secret or several; ``InvalidSecret`` names the first unusable one."""
    single = isinstance(secret, (str, bytes)) or not isinstance(secret, (list, tuple, Sequence))
    secrets: list[object] = [secret] if single else list(secret)
    if not secrets:
        raise InvalidSecret("no secret given: pass the endpoint's 'whsec_...' secret, or a list of them")
    keys = []
    for n, s in enumerate(secrets, start=1):
        where = "the secret" if len(secrets) == 1 else f"secret #{n} of {len(secrets)}"
        if isinstance(s, bytes):  # the raw key, as the reference library takes it
            if not s:
                raise InvalidSecret(f"{where} is empty bytes: pass the 'whsec_...' string, or the raw key bytes")
            keys.append(s)
        elif isinstance(s, str):
            try:
                keys.append(secret_key(s))
            except ValueError as exc:  # the message never holds the secret itself
                raise InvalidSecret(f"{where} is unusable: {exc}") from None
        else:
            raise InvalidSecret(f"{where} is of type {type(s).__name__}: pass the 'whsec_...' string or raw key bytes")
    return keys


def _raw_body(payload: object) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):  # the body decoded as UTF-8, as the reference library accepts it
        try:
            return payload.encode("utf-8")
        except UnicodeEncodeError:
            raise RawBodyRequired(
                "payload is a str that is not valid Unicode text (it holds lone surrogates), so it is not the "
                "body that was sent: pass the raw request body as bytes"
            ) from None
    raise RawBodyRequired(
        f"payload must be the raw request body (bytes, or str decoded from it), not {type(payload).__name__}: "
        "pass it exactly as received (Flask: request.get_data(), Django: request.body, Starlette/FastAPI: "
        "await request.body()); a parsed body, or one re-serialised with json.dumps(request.json), changes "
        "whitespace and key order and never verifies"
    )


def _candidate_digests(header: str) -> list[bytes]:
    """The decoded ``v1,`` signatures in a ``webhook-signature`` value; other versions are skipped."""
    digests = []
    for part in header.split():
        version, sep, value = part.partition(",")
        if not sep or version != SIGNATURE_VERSION:
            continue
        try:  # like the reference library, characters outside base64 are dropped; the HMAC must still match
            digests.append(base64.b64decode(value))
        except (binascii.Error, ValueError):
            continue
    return digests


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes | Sequence[str | bytes],
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
    seen: SeenIds | None = None,
) -> Any:
    """Verify a Standard Webhooks request and return its parsed JSON body.

    ``payload`` is the raw request body (bytes, or a str decoded from it as UTF-8); ``headers`` any mapping,
    looked up case-insensitively (``webhook-*``, else ``svix-*``); ``secret`` one ``whsec_`` secret (the
    prefix and base64 padding are optional; ``bytes`` is the raw key) or several (rotation: any may match);
    ``tolerance_s`` how far the signed timestamp may be from ``now`` (default: the clock) either way.
    With ``seen``, the webhook-id is claimed once everything else passed and a repeat raises
    ``AlreadyProcessed``. Returns a dict (one event) or, for a batched endpoint, a list of them.
    """
    body = _raw_body(payload)
    keys = _keys(secret)
    if tolerance_s < 0:
        raise ValueError("tolerance_s must not be negative")

    folded = _lower_headers(headers)
    msg_id = _header(folded, ID_HEADERS)
    ts_text = _header(folded, TIMESTAMP_HEADERS)
    signatures = _header(folded, SIGNATURE_HEADERS)
    if not (ts_text.isascii() and ts_text.isdigit()):
        raise MalformedHeader(f"webhook-timestamp must be integer Unix seconds, got {ts_text[:40]!r}")
    timestamp = int(ts_text)

    content = f"{msg_id}.{timestamp}.".encode() + body
    expected = [hmac.new(key, content, hashlib.sha256).digest() for key in keys]
    received = _candidate_digests(signatures)
    matched = False
    for digest in received:
        for want in expected:
            # no early exit: the time taken does not tell which signature or key came close
            matched |= hmac.compare_digest(digest, want)
    if not matched:
        if not received:
            raise InvalidSignature("webhook-signature holds no v1 signature")
        raise InvalidSignature("no signature matches: wrong secret, or the body is not the raw bytes that were signed")

    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise TimestampTooOld(f"webhook-timestamp is {int(current - timestamp)} s old (tolerance {tolerance_s} s)")
    if timestamp > current + tolerance_s:
        raise TimestampTooNew(
            f"webhook-timestamp is {int(timestamp - current)} s in the future (tolerance {tolerance_s} s)"
        )

    try:
        text = body.decode("utf-8")  # JSON on the wire is UTF-8; json.loads(bytes) would also guess UTF-16/32
    except UnicodeDecodeError as exc:
        raise InvalidPayload(f"body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise InvalidPayload(f"body is not valid JSON: {exc}") from None
    if not isinstance(event, (dict, list)):
        raise InvalidPayload(f"body is JSON {type(event).__name__}, not an object or array")

    if seen is not None and not seen.first_time(msg_id):
        raise AlreadyProcessed(f"webhook-id {msg_id!r} was already received")
    return event


__all__ = ["DEFAULT_SEEN_TTL_S", "DEFAULT_TOLERANCE_S", "RedisLike", "SeenIds", "verify", "webhook_id"]
