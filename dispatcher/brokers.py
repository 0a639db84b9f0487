"""Which brokers Celery's kicks may go through, told apart by their URL's scheme (no connection made)."""

from __future__ import annotations

from urllib.parse import urlsplit

from dispatcher.errors import ConfigError

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+sentinel"})


def broker_scheme(url: str) -> str:
    """The scheme of a broker URL, lower-cased (``amqp``, ``redis``, ...; empty when it has none)."""
    return url.partition("://")[0].lower() if "://" in url else ""


def is_amqp(url: str) -> bool:
    """Whether ``url`` names a RabbitMQ (AMQP 0-9-1) broker."""
    return broker_scheme(url) in AMQP_SCHEMES


def check_broker_url(url: str) -> None:
    """Raise ``ConfigError`` (naming DISPATCHER_BROKER_URL, never echoing the URL: it may hold a password)
    unless ``url`` is a broker URL the dispatcher supports."""
    scheme = broker_scheme(url)
    if scheme not in AMQP_SCHEMES | REDIS_SCHEMES:
        plain = bool(scheme) and len(scheme) <= 20 and all(c.isalnum() or c in "+-." for c in scheme)
        shown = f"the scheme {scheme}://" if plain else "a URL without a scheme"
        raise ConfigError(
            f"DISPATCHER_BROKER_URL: unsupported broker ({shown}): use amqp:// or amqps:// (RabbitMQ), redis://, "
            "rediss:// or redis+sentinel://, or leave it unset to use the store's Redis"
        )
    if scheme == "redis+sentinel":
        return  # several hosts: its own parser (``store.connection``) checks it when the broker is configured
    try:
        urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError("DISPATCHER_BROKER_URL is not a valid URL (check its host and port)") from None
