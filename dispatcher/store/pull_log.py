"""Server side of pull consumers: reading an endpoint's log (a Redis stream) by cursor, asynchronously.

Fan-out appends the events of ``poll`` and ``also_poll`` endpoints to ``Keys.stream(endpoint id)``
(``FANOUT_COMMIT``). This module reads them for the long-poll and WebSocket routes
(``dispatcher.api_pull``) on ``redis.asyncio``, never blocking a thread:

- a **cursor** is ``<endpoint id>:<stream entry id>``: "everything up to this entry has been seen".
  No cursor (or ``start``) reads from the oldest entry kept; ``latest`` from the newest one (only
  what arrives next). A cursor of another endpoint, or a malformed one, raises ``InvalidCursor``.
- a cursor whose following entries were trimmed (count or age retention) raises ``CursorExpired``
  with the cursor where the log now starts: each entry stores the id of the entry before it
  (``prev``), and the first entry kept having a ``prev`` past the cursor means entries were lost.
- each event is **signed when read**, with the endpoint's current secret (and rotated-out ones still
  in their grace period), so a consumer verifies it exactly like a webhook POST, whatever its age.
- waiting for new entries goes through ``StreamWaiters``: one blocking ``XREAD`` per process, on one
  connection, for every long-poll and WebSocket waiting on any endpoint; a waiter that arrives while
  the ``XREAD`` is blocked without its stream re-arms it with ``CLIENT UNBLOCK``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio as aredis

from dispatcher.errors import CursorExpired, EndpointNotFound, InvalidCursor
from dispatcher.models import Endpoint
from dispatcher.settings import Settings
from dispatcher.signing import secret_key, signature_header
from dispatcher.store.connection import connect_async
from dispatcher.store.keys import Keys
from dispatcher.store.scripts import Scripts

log = logging.getLogger(__name__)

START = "0-0"  # the stream position before every entry
MAX_PAGE_BYTES = 4 * 1024 * 1024  # bodies per page (at least one event is always returned)
BLOCK_MS = 5000  # longest single XREAD BLOCK of the waiter hub
VERSION_POLL_S = 0.25  # how often open streams' process looks for endpoint changes (revoked tokens)
_ID = re.compile(r"(\d{1,19})-(\d{1,19})")


# -- cursors ------------------------------------------------------------------------------------------
def position(sid: str) -> tuple[int, int]:
    """A stream entry id as a comparable (ms, seq) pair."""
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq)


def format_cursor(endpoint_id: str, sid: str) -> str:
    return f"{endpoint_id}:{sid}"


def parse_cursor(endpoint_id: str, cursor: str | None) -> str | None:
    """The stream id after which to read (``START`` for the oldest kept), or None for ``latest``."""
    if cursor is None or cursor in ("", "start"):
        return START
    if cursor == "latest":
        return None
    owner, sep, sid = cursor.rpartition(":")
    if not sep or not _ID.fullmatch(sid) or max(position(sid)) >= 2**63:
        raise InvalidCursor(f"malformed cursor {cursor[:80]!r}: use the 'cursor' of an answer, 'start' or 'latest'")
    if owner != endpoint_id:
        raise InvalidCursor(f"this cursor belongs to endpoint {owner[:40]!r}, not {endpoint_id!r}")
    return sid


# -- events ---------------------------------------------------------------------------------------------
def signing_keys(endpoint: Endpoint, now: float) -> list[bytes]:
    """The current key, then every rotated-out key still in its grace period (as a POST is signed)."""
    previous = (secret_key(p.secret) for p in endpoint.previous_secrets if p.expires_at > now)
    return [secret_key(endpoint.secret), *previous]


def event_dict(endpoint_id: str, sid: str, fields: dict[bytes, bytes], keys: list[bytes], now: int) -> dict[str, Any]:
    """One polled event: its cursor, the Standard Webhooks headers, the signed body and the parsed payload.
    Raises ``ValueError`` or ``KeyError`` for an entry that does not read."""
    body = fields[b"body"]
    orjson.loads(body)  # served as a JSON fragment: it must be JSON
    msg_id = fields[b"id"].decode()
    return {
        "cursor": format_cursor(endpoint_id, sid),
        "id": msg_id,
        "type": fields[b"type"].decode(),
        "headers": {
            "webhook-id": msg_id,
            "webhook-timestamp": str(now),
            "webhook-signature": signature_header(keys, msg_id, now, body),
        },
        "body": body.decode(),  # the exact bytes signed (UTF-8): verify these, not a re-encoded payload
        "payload": orjson.Fragment(body),
    }


@dataclass
class Page:
    """Events after a cursor, and the cursor to ask for next (the last event's, or the one asked for)."""

    events: list[dict[str, Any]]
    cursor: str
    position: str  # the stream id of ``cursor``
    has_more: bool = False

    def as_json(self) -> bytes:
        return orjson.dumps({"events": self.events, "cursor": self.cursor, "has_more": self.has_more})


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


# -- waiting --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Waiter:
    after: str
    future: asyncio.Future[bool]


class StreamWaiters:
    """Wakes coroutines waiting for entries after a position in some streams, with one blocking XREAD."""

    def __init__(self, blocker: aredis.Redis, control: aredis.Redis) -> None:
        self._blocker = blocker  # a single dedicated connection
        self._control = control  # the pool, for CLIENT UNBLOCK
        self._waiters: dict[str, list[_Waiter]] = {}
        self._armed: dict[str, str] | None = None  # the streams of the XREAD in flight
        self._generation = 0
        self._unblock_generation = -1
        self._client_id: int | None = None
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[None]] = set()

    def waiting(self) -> int:
        return sum(len(ws) for ws in self._waiters.values())

    async def wait(self, key: str, after: str, timeout_s: float) -> bool:
        """True as soon as ``key`` holds an entry after ``after`` (maybe spuriously); False after ``timeout_s``."""
        waiter = _Waiter(after, asyncio.get_running_loop().create_future())
        self._waiters.setdefault(key, []).append(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dispatcher-stream-waiters")
        self._rearm_for(key, after)
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter.future
        except TimeoutError:
            return False
        finally:
            self._drop(key, waiter)

    def _drop(self, key: str, waiter: _Waiter) -> None:
        ws = self._waiters.get(key)
        if ws is not None and waiter in ws:
            ws.remove(waiter)
            if not ws:
                del self._waiters[key]

    def _rearm_for(self, key: str, after: str) -> None:
        armed = self._armed
        if armed is None:  # idle, or between two XREADs: the next one includes this waiter
            self._idle.set()
            return
        current = armed.get(key)
        if current is not None and position(current) <= position(after):
            return  # the XREAD in flight already wakes on any entry after ``after``
        generation = self._generation
        if self._unblock_generation != generation:
            self._unblock_generation = generation
            task = asyncio.create_task(self._unblock(generation))
            self._helpers.add(task)
            task.add_done_callback(self._helpers.discard)

    async def _unblock(self, generation: int) -> None:
        """Interrupt the XREAD of ``generation`` so the loop re-arms it with the new waiters' streams."""
        for _ in range(50):  # the XREAD may not have reached Redis yet: try again for ~100 ms
            if self._generation != generation or self._armed is None or self._client_id is None:
                return
            try:
                if await self._control.client_unblock(self._client_id):
                    return
            except redis.RedisError:
                return  # the XREAD's own timeout (BLOCK_MS) re-arms it
            await asyncio.sleep(0.002)

    def _wake(self, key: str, first: str | None) -> None:
        """Wake the waiters of ``key`` behind ``first`` (every one when ``first`` is None)."""
        ws = self._waiters.get(key)
        if not ws:
            return
        at = position(first) if first is not None else None
        keep = []
        for w in ws:
            if at is None or position(w.after) < at:
                if not w.future.done():
                    w.future.set_result(True)
            else:
                keep.append(w)
        if keep:
            self._waiters[key] = keep
        else:
            del self._waiters[key]

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._waiters:
                self._idle.clear()
                await self._idle.wait()
                continue
            streams = {k: min((w.after for w in ws), key=position) for k, ws in self._waiters.items()}
            try:
                self._client_id = int(await self._blocker.client_id())
                self._generation += 1
                self._armed = streams
                reply: Any = await self._blocker.xread(streams, count=1, block=BLOCK_MS)  # type: ignore[arg-type]
            except (redis.RedisError, OSError) as exc:
                log.warning("pull log waiters: Redis error (%s); retrying", type(exc).__name__)
                self._client_id = None
                for key in list(self._waiters):
                    self._wake(key, None)  # they read again and answer the error themselves
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            finally:
                self._armed = None
            backoff = 0.05
            for stream_key, entries in reply or ():
                first = entries[0][0]
                self._wake(stream_key.decode(), first.decode())

    async def aclose(self) -> None:
        for task in (self._task, *self._helpers):
            if task is not None:
                task.cancel()
        for task in (self._task, *self._helpers):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        for ws in self._waiters.values():
            for w in ws:
                if not w.future.done():
                    w.future.set_result(False)
        self._waiters.clear()


# -- the reader -----------------------------------------------------------------------------------------
class PullLog:
    """Reads endpoints' pull logs for the API process; its Redis clients belong to the running event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: aredis.Redis | None = None
        self._blocker: aredis.Redis | None = None
        self._waiters: StreamWaiters | None = None
        self._scripts: Scripts | None = None
        self.streams_open = 0  # WebSocket streams being served (dispatcher.api.pull)
        self._changed = asyncio.Event()  # replaced (after being set) whenever the endpoints' version moves
        self._version_task: asyncio.Task[None] | None = None
        self._version_listeners = 0

    def _ensure(self) -> tuple[aredis.Redis, StreamWaiters]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._redis is None or self._waiters is None:
            url = self.settings.store_url
            self._redis = connect_async(
                url, max_connections=64, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
            )
            self._blocker = connect_async(
                url, single_connection_client=True, socket_timeout=BLOCK_MS / 1000 + 10, socket_connect_timeout=5
            )
            self._waiters = StreamWaiters(self._blocker, self._redis)
            self._scripts = Scripts(self._redis)  # type: ignore[arg-type]  # redis.asyncio: the same API, awaited
            self._loop = loop
        return self._redis, self._waiters

    async def find_endpoint(self, endpoint_id: str) -> Endpoint | None:
        r, _ = self._ensure()
        raw = await r.hget(self.keys.endpoints, endpoint_id)
        return None if raw is None else Endpoint.model_validate_json(raw)

    async def endpoint(self, endpoint_id: str) -> Endpoint:
        found = await self.find_endpoint(endpoint_id)
        if found is None:
            raise EndpointNotFound(f"no endpoint {endpoint_id!r}")
        return found

    async def read(self, endpoint: Endpoint, after: str | None, limit: int) -> Page:
        """Up to ``limit`` events after stream id ``after`` (None: none, the cursor of the newest entry)."""
        self._ensure()
        assert self._scripts is not None
        out = await self._scripts.run(
            "read_stream",
            [self.keys.stream(endpoint.id)],
            ["latest" if after is None else "after", after or START, limit, MAX_PAGE_BYTES],
        )
        status, sid = out[0], str(out[1].decode())
        if status == b"expired":
            resume = format_cursor(endpoint.id, sid)
            raise CursorExpired(
                f"the cursor is older than endpoint {endpoint.id}'s log, which now starts at event "
                f"{out[2].decode()}; events between were trimmed by retention (poll_max_events / poll_max_age_s). "
                f"Resume from cursor {resume}",
                resume,
            )
        entries = out[2:]
        now = time.time()
        keys = signing_keys(endpoint, now)
        events = []
        for e in entries:
            try:
                events.append(event_dict(endpoint.id, e[0].decode(), _pairs(e[1]), keys, int(now)))
            except (KeyError, ValueError):  # an entry overwritten by something else: passed over
                log.warning("pull log of %s: entry %s does not read; skipped", endpoint.id, e[0].decode())
        if events:
            sid = entries[-1][0].decode()
        size = sum(len(e["body"]) for e in events)
        return Page(events, format_cursor(endpoint.id, sid), sid, len(events) >= limit or size >= MAX_PAGE_BYTES)

    async def wait(self, endpoint_id: str, after: str, timeout_s: float) -> bool:
        """Until the endpoint's log holds an entry after ``after`` (True, possibly spurious) or ``timeout_s``."""
        _, waiters = self._ensure()
        return await waiters.wait(self.keys.stream(endpoint_id), after, timeout_s)

    async def poll(self, endpoint: Endpoint, after: str | None, limit: int, wait_s: float) -> Page:
        """``read``, and when nothing is there, hold on up to ``wait_s`` for the next events."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        page = await self.read(endpoint, after, limit)
        while not page.events:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self.wait(endpoint.id, page.position, remaining):
                return page
            page = await self.read(endpoint, page.position, limit)
        return page

    def waiting(self) -> int:
        return self._waiters.waiting() if self._waiters is not None else 0

    async def endpoints_changed(self, timeout_s: float) -> bool:
        """Until an endpoint changes (True, within about ``VERSION_POLL_S``) or ``timeout_s`` (False).

        One task per process reads the endpoints' version counter while anyone waits here, so a
        thousand open streams cost one ``GET`` every ``VERSION_POLL_S``, not a thousand."""
        self._ensure()
        if self._version_task is None or self._version_task.done():
            self._version_task = asyncio.create_task(self._watch_version(), name="dispatcher-endpoints-version")
        self._version_listeners += 1
        event = self._changed
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._version_listeners -= 1

    async def _watch_version(self) -> None:
        last: Any = None
        while self._version_listeners > 0 or last is None:
            try:
                assert self._redis is not None
                version = await self._redis.get(self.keys.endpoints_version)
            except (redis.RedisError, OSError):
                version = last
            if last is not None and version != last:
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()
            last = version if version is not None else b""
            await asyncio.sleep(VERSION_POLL_S)

    async def aclose(self) -> None:
        if self._loop is not asyncio.get_running_loop():
            return  # made in another loop (a test client's): dropped with it
        if self._version_task is not None:
            self._version_task.cancel()
            with contextlib.suppress(BaseException):
                await self._version_task
        if self._waiters is not None:
            await self._waiters.aclose()
        for client in (self._blocker, self._redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose(close_connection_pool=True)
        self._redis = self._blocker = self._waiters = None
        self._loop = None
