"""One map from foreign exceptions (redis, kombu/Celery, aiohttp, pyreqwest) to the dispatcher's own.

Every room that catches a library's exception to turn it into ours goes through ``translate``: the
client and the store (``StoreUnavailable``), kick publishing (``BrokerUnavailable``), the HTTP engine
(``DeliveryError`` subclasses, whose messages become the attempts' recorded errors), the API and CLI.
A library that is not imported cannot have raised, so each is looked up only when already loaded.
"""

from __future__ import annotations

import functools
import re
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import redis

from dispatcher.errors import (
    AttemptTimeout,
    BrokerUnavailable,
    ConnectionFailed,
    DispatcherError,
    ReceiverProtocolError,
    StoreError,
    StoreUnavailable,
)
from dispatcher.ssrf import AddressRefused

P = ParamSpec("P")
R = TypeVar("R")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


_OS_ERROR_NUMBER = re.compile(r" \(os error \d+\)$")
_URL_IN_TEXT = re.compile(r"https?://[^\s)]+")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _one_line(exc) if exc.strerror or exc.args else type(exc).__name__


def _reqwest_reason(exc: BaseException, url: str, last: bool = False) -> str:
    """A pyreqwest error's chain of causes (or only the deepest), the request URL replaced by ``<url>``."""
    details = getattr(exc, "details", None)
    causes = details.get("causes") if isinstance(details, dict) else None
    messages = [str(c.get("message", "")) for c in causes or () if isinstance(c, dict)]
    head = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
    if last and messages:
        text = _OS_ERROR_NUMBER.sub("", messages[-1])
    else:
        text = " ".join(": ".join([head, *messages]).split())
    return _URL_IN_TEXT.sub("<url>", text.replace(url, "<url>") if url else text)


def translate(exc: BaseException, url: str | None = None) -> DispatcherError | None:
    """Our exception for ``exc``, or None when it is not a failure of Redis, the broker or an HTTP exchange.

    ``url``: given for an HTTP exchange (a webhook POST), whose failures become ``DeliveryError``s; it is
    scrubbed from their messages (a chat robot's URL carries its token).
    """
    if isinstance(exc, DispatcherError):
        return exc
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return StoreUnavailable(f"Redis is unreachable: {_one_line(exc)}")
    if isinstance(exc, redis.RedisError):
        return StoreError(f"Redis error: {_one_line(exc)}")
    kombu = sys.modules.get("kombu.exceptions")
    if kombu is not None and isinstance(exc, kombu.KombuError):
        return BrokerUnavailable(f"broker error: {_one_line(exc)}")
    if url is None:
        return None
    aiohttp = sys.modules.get("aiohttp")
    if isinstance(exc, TimeoutError):
        return AttemptTimeout("timeout")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectionFailed(f"connection error: {_os_reason(exc.os_error)}")
    if isinstance(exc, (socket.gaierror, AddressRefused)):  # resolving failed (an engine that resolves first)
        return ConnectionFailed(f"connection error: {_os_reason(exc)}")
    reqwest = sys.modules.get("pyreqwest.exceptions")
    if reqwest is not None and isinstance(exc, reqwest.ConnectError):
        return ConnectionFailed(f"connection error: {_reqwest_reason(exc, url, last=True)}")
    if reqwest is not None and isinstance(exc, reqwest.PyreqwestError):
        return ReceiverProtocolError(f"{type(exc).__name__}: {_reqwest_reason(exc, url)[:200]}")
    if (aiohttp is not None and isinstance(exc, aiohttp.ClientError)) or isinstance(exc, OSError):
        text = str(exc).replace(url, "<url>") if url else str(exc)
        return ReceiverProtocolError(f"{type(exc).__name__}: {text[:200]}")
    return None


@contextmanager
def translated() -> Iterator[None]:
    """Raise ours in place of a foreign exception ``translate`` knows; anything else goes through."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc


def translating(fn: Callable[P, R]) -> Callable[P, R]:
    """``translated()`` around every call of ``fn``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with translated():
            return fn(*args, **kwargs)

    return wrapper
