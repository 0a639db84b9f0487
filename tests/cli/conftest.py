"""Fixtures of the CLI's tests: invoking ``dispatcher`` in this process (click's CliRunner), and a real
``dispatcher dev`` process tree."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dispatcher.cli.embedded import free_port
from dispatcher.cli.main import cli


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """``dispatcher dev`` with no DISPATCHER_* in its environment (so it embeds Redis, and announces it in the
    session's XDG_RUNTIME_DIR), in its own session: (process, its log file, Flower's port)."""
    log_path = tmp_path / "dev.log"
    flower_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env["PYTHONUNBUFFERED"] = "1"
    args = [sys.executable, "-m", "dispatcher", "dev", "--port-flower", str(flower_port),
            "--port-api", str(free_port()), "--dir", str(tmp_path / "d")]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    yield proc, log_path, flower_port
    if proc.poll() is None:  # the test failed midway: stop what it started, harder if needed
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log_path.read_text(errors="replace")
    for pid in re.findall(r"^  (?:worker|scheduler|flower|api) +pid (\d+)", text, re.MULTILINE):
        if not _group_gone(int(pid)):
            os.killpg(int(pid), signal.SIGKILL)


@pytest.fixture
def run() -> Callable[..., Result]:
    """``run(*args, stdin=None)``: ``dispatcher *args`` in this process; returns click's Result."""

    def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=stdin, env=env)

    return invoke


@pytest.fixture
def ok() -> Callable[[Result], str]:
    """``ok(result)``: assert the command exited 0 and return its stdout."""

    def check(result: Result) -> str:
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
        return result.stdout

    return check
