"""The HTTP exchange: one signed POST (or one chat message) and what it came to, never an exception.

Requests go out on the worker process' HTTP engine (``Runtime.engine``, ``dispatcher.worker.engines``),
which connects only to addresses its guarded resolver vetted (``dispatcher.ssrf``); IP-literal hosts are
vetted when the endpoint is loaded (``Target.refused``). Redirects are not followed, at most
``response_body_max_bytes`` of an answer is read (a chat platform's answer up to
``ROBOT_RESPONSE_MAX_BYTES``, inflated within that bound to be classified), and every failure becomes a
``DeliveryError`` whose message is the attempt's error.
"""

from __future__ import annotations

import hashlib
import time
import zlib

import orjson
from yarl import URL

from dispatcher.errormap import translate
from dispatcher.errors import DeliveryError, TargetRefused
from dispatcher.retry import parse_retry_after
from dispatcher.signing import webhook_headers
from dispatcher.worker.engines import Answer, Engine
from dispatcher.worker.jobs import Job, Outcome, Skip
from dispatcher.worker.targets import Target

ROBOT_RESPONSE_MAX_BYTES = 64 * 1024  # a chat platform's answer is read whole (up to this) to classify it


def batch_message_id(jobs: list[Job]) -> str:
    """The ``webhook-id`` of a batched POST: the same for the same set of events."""
    digest = hashlib.blake2b("|".join(sorted(j.event_id for j in jobs)).encode(), digest_size=12).hexdigest()
    return f"batch_{digest}"


def build_request(jobs: list[Job], max_batch: int) -> tuple[str, bytes]:
    """(webhook-id, body) for one POST: the event itself, or a JSON array of events when batching."""
    if max_batch <= 1:
        job = jobs[0]
        assert job.body is not None
        return job.event_id, job.body
    return batch_message_id(jobs), b"[" + b",".join(j.body for j in jobs if j.body is not None) + b"]"


def _decoded(answer: Answer, cap: int) -> bytes:
    """A compressed answer (engines do not decompress) inflated for reading within ``cap``, best effort."""
    raw = answer.body
    if answer.headers.get("Content-Encoding", "").lower() not in ("gzip", "deflate", "x-gzip"):
        return raw
    try:
        return zlib.decompressobj(wbits=47).decompress(raw, cap)  # gzip or zlib header
    except zlib.error:
        return raw


async def post(engine: Engine, target: Target, msg_id: str, body: bytes, cap: int) -> Outcome:
    """One signed Standard Webhooks POST."""
    out = Outcome()
    headers = webhook_headers(target.signing_keys(out.at), msg_id, int(out.at), body)
    await _exchange(engine, out, target, target.url, headers, body, cap)
    return out


async def post_robot(engine: Engine, target: Target, job: Job, cap: int) -> Outcome:
    """One chat message: the event rendered by the endpoint's platform, the answer classified by its rules."""
    assert target.robot is not None and job.body is not None
    at = time.time()
    try:
        req = target.robot.render(orjson.loads(job.body), target.endpoint, at)
    except Exception as exc:  # a stored event the platform cannot render: retrying cannot help
        return Outcome.skip(Skip.EVENT_UNUSABLE, f"event unusable by {target.endpoint.kind}: {type(exc).__name__}")
    out = Outcome(at=at)
    url = target.url if req.url == target.endpoint.url else URL(req.url)
    await _exchange(engine, out, target, url, req.headers, req.body, max(cap, ROBOT_RESPONSE_MAX_BYTES), cap)
    return out


async def _exchange(
    engine: Engine,
    out: Outcome,
    target: Target,
    url: URL,
    headers: dict[str, str],
    body: bytes,
    cap: int,
    keep: int | None = None,
) -> None:
    """POST and fill ``out``: status, response (the first ``keep`` bytes, default ``cap``), Retry-After, a
    robot's verdict; a failure to get an answer is recorded as the ``DeliveryError`` it maps to."""
    robot = target.robot
    t0 = time.perf_counter()
    try:
        if target.refused:  # an IP literal outside what the settings allow (the resolver vets names)
            raise TargetRefused(f"refused: {target.refused}")
        out.sent = True
        answer = await engine.post(url, headers, body, cap)
        out.status = answer.status
        if answer.failure is not None:  # the body could not be read: the status is recorded with the error
            raise answer.failure
        raw = answer.body
        if answer.status == 429 or answer.status >= 500 or "Retry-After" in answer.headers:
            out.retry_after_s = parse_retry_after(answer.headers.get("Retry-After"))
        if robot is not None:
            raw = _decoded(answer, cap)
            verdict = robot.classify(answer.status, answer.headers, raw)
            out.rejected = 200 <= answer.status < 300 and not verdict.ok
            out.error = verdict.error if out.rejected else None
            out.throttled = verdict.throttled
            if verdict.retry_after_s is not None:
                out.retry_after_s = max(out.retry_after_s or 0.0, verdict.retry_after_s)
        out.response = raw[: keep or cap].decode("utf-8", "replace")
    except Exception as exc:
        # a URL may carry a token (chat robots): the mapping never copies it into the attempt record
        mapped = translate(exc, str(url)) if not isinstance(exc, DeliveryError) else exc
        if not isinstance(mapped, DeliveryError):
            raise
        out.error = str(mapped).replace(str(target.url), "<url>")
        out.permanent = not mapped.retryable
    if out.sent:
        out.latency_ms = round((time.perf_counter() - t0) * 1000, 2)
