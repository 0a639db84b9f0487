"""A fast benchmark receiver: checks every signature, counts deliveries and duplicates.

Run in its own process: ``python -m dispatcher.bench.receiver --secret whsec_...``; it listens on a free
loopback port (or ``--port``) and prints that port as its first line on stdout.
Paths under ``/hang/`` hold the request open (an endpoint that never answers).
``GET /stats`` returns the counts as JSON; ``POST /reset`` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import socket
import sys
import time
from collections import Counter

from aiohttp import web

from dispatcher.signing import secret_key


class Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.bad = 0
        self.duplicates = 0
        self.seen: set[tuple[str, str]] = set()
        self.per_path: Counter[str] = Counter()
        self.arrivals: dict[str, float] = {}
        self.first = 0.0
        self.last = 0.0


def make_app(secret: str, record_arrivals: bool = True) -> web.Application:
    key = secret_key(secret)
    counts = Counts()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        msg_id = h.get("webhook-id", "")
        content = f"{msg_id}.{h.get('webhook-timestamp', '')}.".encode() + body
        expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        sigs = [s.partition(",")[2] for s in h.get("webhook-signature", "").split()]
        if not any(hmac.compare_digest(expected, s) for s in sigs):
            counts.bad += 1
            return web.Response(status=401)
        now = time.time()
        path = request.path
        pair = (path, msg_id)
        if pair in counts.seen:
            counts.duplicates += 1
        else:
            counts.seen.add(pair)
            if record_arrivals:
                counts.arrivals.setdefault(msg_id, now)
        counts.total += 1
        counts.per_path[path] += 1
        counts.first = counts.first or now
        counts.last = now
        return web.Response(text="ok")

    async def hang(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(3600)
        return web.Response(text="late")

    async def stats(request: web.Request) -> web.Response:
        full = request.query.get("arrivals") == "1"
        return web.json_response(
            {
                "total": counts.total,
                "unique": len(counts.seen),
                "duplicates": counts.duplicates,
                "bad_signatures": counts.bad,
                "paths": len(counts.per_path),
                "first": counts.first,
                "last": counts.last,
                "arrivals": counts.arrivals if full else None,
            }
        )

    async def reset(request: web.Request) -> web.Response:
        counts.reset()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/hang/{tail:.*}", hang)
    app.router.add_post("/{tail:.*}", hook)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--secret", required=True)
    args = parser.parse_args(argv)
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    sys.stdout.write(f"{sock.getsockname()[1]}\n")
    sys.stdout.flush()
    web.run_app(make_app(args.secret), sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
