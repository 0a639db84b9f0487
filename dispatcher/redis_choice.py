"""Which Redis a process uses: ``DISPATCHER_REDIS_URL`` when set, else the running ``dispatcher dev``'s,
else a clear error (never a guess)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dispatcher.devstack import DevStackInfo, devstack_path, read_devstack
from dispatcher.errors import ConfigError

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print."""
    try:
        parts = urlsplit(url)
        password, user, host, port = parts.password, parts.username, parts.hostname, parts.port
    except ValueError:
        return "<unparseable url>"
    if password is None:
        return url
    host = host or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user or ''}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


FROM_SETTING = "DISPATCHER_REDIS_URL"
FROM_DEVSTACK = "dev stack"
NO_REDIS = "no Redis configured: set DISPATCHER_REDIS_URL=redis://host:6379/0, or start `dispatcher dev`"


@dataclass(frozen=True)
class RedisChoice:
    """The Redis a process uses and where that came from: ``source`` is ``DISPATCHER_REDIS_URL`` or
    ``dev stack`` (then ``devstack`` is the announcement read from ``devstack_file``)."""

    url: str
    source: str
    devstack: DevStackInfo | None = None
    devstack_file: Path | None = None

    @property
    def from_devstack(self) -> bool:
        return self.source == FROM_DEVSTACK

    def describe(self) -> str:
        """One line for logs: the URL (password masked) and where it came from."""
        if self.devstack is not None:
            return (
                f"{redact_url(self.url)} (the Redis of `dispatcher dev`, pid {self.devstack.pid}, found in "
                f"{self.devstack_file}; set DISPATCHER_REDIS_URL to use another)"
            )
        return f"{redact_url(self.url)} (from {self.source})"


def choose_redis(redis_url: str | None, devstack_file: str | None = None) -> RedisChoice:
    """The Redis to use: ``redis_url`` when set, else the running ``dispatcher dev``'s (announced in
    ``devstack_path(devstack_file)``), else ``ConfigError`` naming ``DISPATCHER_REDIS_URL``: never a guess."""
    if redis_url:
        return RedisChoice(redis_url, FROM_SETTING)
    path = devstack_path(devstack_file)
    info = read_devstack(path)
    if info is not None and info.alive():
        choice = RedisChoice(info.redis_url, FROM_DEVSTACK, info, path)
        log.info("Redis: %s", choice.describe())
        return choice
    if info is not None:
        raise ConfigError(f"{NO_REDIS} (the one announced in {path}, pid {info.pid}, no longer runs)")
    raise ConfigError(f"{NO_REDIS} (a running one is found through {path})")
