"""``dispatcher dev`` as a real process tree: an embedded Redis, a worker, the scheduler, Flower and the API;
a newcomer's first event goes through it, and Ctrl-C stops every process it started."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import Result

if TYPE_CHECKING:
    from tests.conftest import Receiver


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_dev_runs_the_stack_on_an_embedded_redis_and_stops_it_on_sigint(
    dev_stack: tuple[subprocess.Popen[bytes], Path, int],
    receiver: Receiver,
    clear_dispatcher_env: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
    wait_until: Callable[..., Any],
    ok: Callable[[Result], str],
    run: Callable[..., Result],
) -> None:
    proc, log_path, flower_port = dev_stack

    def log() -> str:
        return log_path.read_text(errors="replace")

    wait_until(lambda: "dispatcher dev is ready" in log() or proc.poll() is not None, 90, 0.1, "dev to be ready")
    assert proc.poll() is None, log()
    text = log()
    url = re.search(r"export DISPATCHER_REDIS_URL=(\S+)", text)
    assert url is not None, text
    assert re.search(r"^  redis +\S+ +\(embedded, pid \d+", text, re.MULTILINE), text
    redis_pid = int(re.findall(r"\(embedded, pid (\d+)", text)[0])
    found = re.findall(r"^  (worker|scheduler|flower|api) +pid (\d+)", text, re.MULTILINE)
    pids = {name: int(pid) for name, pid in found}
    assert set(pids) == {"worker", "scheduler", "flower", "api"}
    assert f"http://127.0.0.1:{flower_port}" in text

    with urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/", timeout=5) as response:
        assert response.status == 200
    api_url = re.search(r"(http://127\.0\.0\.1:\d+)/  \(web page", text)
    assert api_url is not None, text
    with urllib.request.urlopen(f"{api_url.group(1)}/healthz", timeout=5) as response:
        assert json.loads(response.read())["redis"] == "ok"

    # a newcomer's first event, with what the banner says to export
    clear_dispatcher_env()
    monkeypatch.setenv("DISPATCHER_REDIS_URL", url.group(1))
    monkeypatch.setenv("DISPATCHER_ALLOW_PRIVATE_TARGETS", "true")
    ok(run("subscribe", receiver.url, "-t", "*"))
    event_id = ok(run("enqueue", "user.created", '{"id": 1}')).strip()
    [request] = receiver.wait_for(1, 20)
    body = json.loads(request.body)
    assert body["id"] == event_id and body["data"] == {"id": 1}

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
    assert proc.wait(25) == 0, log()
    assert "dev: stopped" in log()
    wait_until(lambda: _group_gone(proc.pid), 5, 0.05, "dev's process group to be gone")
    for name, pid in pids.items():
        wait_until(functools.partial(_group_gone, pid), 5, 0.05, f"{name}'s process group to be gone")
    wait_until(lambda: _pid_gone(redis_pid), 5, 0.05, "the embedded Redis to be gone")
