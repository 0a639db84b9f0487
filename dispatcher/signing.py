"""Standard Webhooks signatures: secrets, the signed content and the ``webhook-*`` headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"


def generate_secret(nbytes: int = 24) -> str:
    """A new ``whsec_`` secret holding ``nbytes`` random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(nbytes)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a secret: ``whsec_`` (optional) + standard base64, padded or not.

    Surrounding whitespace (a secret read from a file) is ignored. Anything else outside the base64
    alphabet raises ``ValueError``: the reference library would silently drop such characters and verify
    with a key nobody meant.
    """
    text = secret.strip()
    raw = text[len(SECRET_PREFIX) :] if text.startswith(SECRET_PREFIX) else text
    unpadded = raw.rstrip("=")
    if len(unpadded) % 4 == 1:
        raise ValueError(
            f"secret's base64 has {len(unpadded)} characters, one more than a multiple of 4: "
            "a character was lost or added when it was copied"
        )
    try:
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (ValueError, TypeError):
        raise ValueError(
            "secret must be 'whsec_' followed by standard base64 (A-Z a-z 0-9 + /, padding optional)"
        ) from None
    if not key:
        raise ValueError("secret holds no key bytes: 'whsec_' must be followed by base64")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{id}.{timestamp}.{body}``."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key, space-separated (key rotation)."""
    return " ".join(sign(k, msg_id, timestamp, body) for k in keys)


def webhook_headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers plus the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, msg_id, timestamp, body),
    }


PULL_TOKEN_PREFIX = "whpt_"


def endpoint_token(endpoint_id: str, secret: str) -> str:
    """A credential that reads one endpoint's pull log only: ``whpt_`` + HMAC of the endpoint id under its secret.

    A pull consumer derives it from the secret it already holds to verify signatures, so it needs no API
    key; the secret itself never travels. The signed content cannot collide with a webhook signature's
    (``{id}.{integer timestamp}.{body}``).
    """
    mac = hmac.new(secret_key(secret), f"dispatcher-pull-token.v1.{endpoint_id}".encode(), hashlib.sha256).digest()
    return PULL_TOKEN_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")
