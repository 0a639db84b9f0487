"""Which Redis a process uses without ``DISPATCHER_REDIS_URL``: a running ``dispatcher dev``'s (announced in its
dev stack file), else none — a loud ``ConfigError`` naming what to set, never whatever listens on 6379."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from click.testing import Result

from dispatcher import Dispatcher, Settings
from dispatcher.cli.dev import DevStack
from dispatcher.devstack import DevStackInfo, announce, devstack_path, read_devstack, remove_devstack, write_devstack
from dispatcher.errors import ConfigError
from dispatcher.kicks import celery_config
from dispatcher.store.keys import Keys

if TYPE_CHECKING:
    from tests.conftest import Receiver

ENQUEUE = "import dispatcher; print(dispatcher.enqueue('user.created', {'id': 1}))"
SUBSCRIBE_AND_ENQUEUE = (
    "import sys, dispatcher; dispatcher.subscribe(sys.argv[1], ['*']); "
    "print(dispatcher.enqueue('user.created', {'id': 1}))"
)


def _env(**extra: str) -> dict[str, str]:
    """This process' environment without any DISPATCHER_* variable (DISPATCHER_REDIS_URL above all), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(extra)
    return env


def _python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _dispatcher(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _dead_pid() -> int:
    """The pid of a process that has just ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh XDG_RUNTIME_DIR of this test (the default place of the dev stack file), for it and its children."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    monkeypatch.delenv("DISPATCHER_DEVSTACK_FILE", raising=False)
    return directory


# -- with a real `dispatcher dev` ----------------------------------------------------------------------
def test_a_script_without_redis_url_reaches_the_running_dev_stack_and_fails_once_it_stopped(
    dev_stack: tuple[subprocess.Popen[bytes], Path, int],
    private_devstack_dir: Path,
    receiver: Receiver,
    wait_until: Callable[..., Any],
) -> None:
    proc, log_path, _ = dev_stack
    announced = private_devstack_dir / "webhook-dispatcher" / "devstack.json"

    def log() -> str:
        return log_path.read_text(errors="replace")

    wait_until(lambda: "dispatcher dev is ready" in log() or proc.poll() is not None, 90, 0.1, "dev to be ready")
    assert proc.poll() is None, log()
    url = re.search(r"export DISPATCHER_REDIS_URL=(\S+)", log())
    assert url is not None, log()
    assert f"  announced  {announced}" in log()
    info = read_devstack(announced)
    assert info is not None and info.pid == proc.pid and info.redis_url == url.group(1)

    # the README's own producer, run with no DISPATCHER_REDIS_URL: its event is delivered by the dev stack
    env = _env(DISPATCHER_ALLOW_PRIVATE_TARGETS="true")
    script = _python(SUBSCRIBE_AND_ENQUEUE, receiver.url, env=env)
    assert script.returncode == 0, script.stderr
    event_id = script.stdout.strip()
    [request] = receiver.wait_for(1, 20)
    assert json.loads(request.body)["id"] == event_id
    assert redis.Redis.from_url(url.group(1)).exists(Keys("whd:").event(event_id))

    # a command says once, on stderr, which Redis it uses and why
    listing = _dispatcher("endpoints", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    assert receiver.url in listing.stdout
    notice = [line for line in listing.stderr.splitlines() if "dispatcher dev" in line]
    assert len(notice) == 1 and url.group(1) in notice[0] and f"pid {proc.pid}" in notice[0], listing.stderr

    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(25) == 0, log()
    assert not announced.exists()
    after = _python(ENQUEUE, env=env)
    assert after.returncode != 0
    assert "ConfigError: no Redis configured: set DISPATCHER_REDIS_URL=" in after.stderr


# -- with a dev stack file pointing at a real Redis ------------------------------------------------------
def test_a_live_announcement_points_a_script_at_its_redis(
    runtime_dir: Path, redis_url: str, prefix: str, raw_redis: redis.Redis, store_keys: Keys
) -> None:
    announce(devstack_path(), redis_url, "http://127.0.0.1:1")  # this test's pid: alive
    script = _python(ENQUEUE, env=_env(DISPATCHER_KEY_PREFIX=prefix))
    assert script.returncode == 0, script.stderr
    assert raw_redis.exists(store_keys.event(script.stdout.strip()))


def test_without_redis_url_or_dev_stack_the_first_call_fails_naming_what_to_set(
    runtime_dir: Path, redis_url: str, prefix: str, raw_redis: redis.Redis
) -> None:
    env = _env(DISPATCHER_KEY_PREFIX=prefix)
    imported = _python("import dispatcher; dispatcher.Settings()", env=env)
    assert imported.returncode == 0, imported.stderr  # importing (and reading settings) needs no Redis
    script = _python(ENQUEUE, env=env)
    assert script.returncode != 0
    assert "ConfigError: no Redis configured: set DISPATCHER_REDIS_URL=redis://host:6379/0" in script.stderr
    assert "dispatcher dev" in script.stderr

    command = _dispatcher("enqueue", "user.created", "{}", env=env)
    assert command.returncode == 1
    assert command.stderr.startswith("Error: no Redis configured: set DISPATCHER_REDIS_URL="), command.stderr
    assert "Traceback" not in command.stderr
    worker = _dispatcher("worker", env=env)  # refuses before starting Celery
    assert worker.returncode == 1 and "DISPATCHER_REDIS_URL" in worker.stderr
    assert not list(raw_redis.scan_iter(match=f"{prefix}*"))


def test_an_announcement_left_by_a_dead_stack_is_ignored(
    runtime_dir: Path, redis_url: str, prefix: str, raw_redis: redis.Redis
) -> None:
    dead = _dead_pid()
    write_devstack(devstack_path(), DevStackInfo(redis_url, "http://127.0.0.1:1", dead, 0.0))
    script = _python(ENQUEUE, env=_env(DISPATCHER_KEY_PREFIX=prefix))
    assert script.returncode != 0
    assert "no Redis configured: set DISPATCHER_REDIS_URL" in script.stderr
    assert f"pid {dead}, no longer runs" in script.stderr
    assert not list(raw_redis.scan_iter(match=f"{prefix}*"))


# -- the order, in this process ------------------------------------------------------------------------
def test_redis_url_wins_over_a_running_dev_stack(
    runtime_dir: Path, redis_url: str, settings_for: Callable[..., Settings], store_keys: Keys
) -> None:
    announce(devstack_path(), "redis://127.0.0.1:1/0", "http://127.0.0.1:1")  # nothing listens there
    settings = settings_for()
    assert settings.redis_choice().source == "DISPATCHER_REDIS_URL"
    dsp = Dispatcher(settings)
    try:
        event_id = dsp.enqueue("user.created", {"id": 1})
        assert dsp.redis.exists(store_keys.event(event_id))
    finally:
        dsp.close()


def test_the_store_and_the_broker_follow_the_dev_stack(
    runtime_dir: Path, redis_url: str, settings_for: Callable[..., Settings], store_keys: Keys
) -> None:
    announce(devstack_path(), redis_url, "http://127.0.0.1:1")
    settings = settings_for(redis_url=None)
    choice = settings.redis_choice()
    assert choice.from_devstack and choice.devstack is not None and choice.devstack.pid == os.getpid()
    assert settings.store_url == redis_url
    assert celery_config(settings)["broker_url"] == redis_url
    assert celery_config(settings_for(redis_url=None, broker_url="redis://broker:6379/1"))["broker_url"] == (
        "redis://broker:6379/1"
    )
    dsp = Dispatcher(settings)
    try:
        assert dsp.redis.exists(store_keys.event(dsp.enqueue("user.created", {"id": 1})))
    finally:
        dsp.close()
    remove_devstack(devstack_path(), os.getpid())
    assert settings.store_url == redis_url  # chosen once per Settings: a process does not switch midway
    with pytest.raises(ConfigError, match="DISPATCHER_REDIS_URL"):
        settings_for(redis_url=None).redis_choice()


def test_devstack_file_setting_moves_the_announcement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moved = tmp_path / "elsewhere" / "stack.json"
    announce(moved, "redis://127.0.0.1:7/3", "http://127.0.0.1:1")
    assert (moved.stat().st_mode & 0o777) == 0o600  # another user cannot read (or plant) it
    monkeypatch.delenv("DISPATCHER_REDIS_URL", raising=False)
    monkeypatch.setenv("DISPATCHER_DEVSTACK_FILE", str(moved))
    assert Settings().store_url == "redis://127.0.0.1:7/3"
    monkeypatch.setenv("DISPATCHER_REDIS_URL", " ")  # blank is unset
    assert Settings().redis_url is None and Settings().store_url == "redis://127.0.0.1:7/3"


def test_a_stack_withdraws_only_its_own_announcement(tmp_path: Path) -> None:
    path = tmp_path / "devstack.json"
    write_devstack(path, DevStackInfo("redis://127.0.0.1:7/0", "http://127.0.0.1:1", os.getpid(), 0.0))
    remove_devstack(path, _dead_pid())  # another stack, stopping after this one took over
    assert read_devstack(path) is not None
    remove_devstack(path, os.getpid())
    assert not path.exists()
    path.write_text("{not json")
    assert read_devstack(path) is None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
def test_an_announcement_owned_by_another_user_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "devstack.json"
    announce(path, "redis://127.0.0.1:7/0", "http://127.0.0.1:1")
    assert read_devstack(path) is not None
    os.chown(path, os.getuid() + 4242, -1)
    assert read_devstack(path) is None
    with pytest.raises(ConfigError, match="DISPATCHER_REDIS_URL"):
        Settings(redis_url=None, devstack_file=str(path)).redis_choice()


def test_the_cli_names_the_dev_stack_it_uses(
    runtime_dir: Path,
    redis_url: str,
    prefix: str,
    clear_dispatcher_env: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[..., Result],
) -> None:
    clear_dispatcher_env()
    monkeypatch.setenv("DISPATCHER_KEY_PREFIX", prefix)
    announce(devstack_path(), redis_url, "http://127.0.0.1:1")
    result = run("endpoints")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("dispatcher dev") == 1 and redis_url in result.stderr
    monkeypatch.setenv("DISPATCHER_REDIS_URL", redis_url)
    result = run("endpoints")
    assert result.exit_code == 0 and result.stderr == ""  # said only when it comes from the dev stack


def test_a_broker_url_the_embedded_redis_replaces_is_named_never_shown(tmp_path: Path) -> None:
    """The stack's Redis only (no worker, API or Flower are started)."""
    out = io.StringIO()
    env = {"PATH": os.environ.get("PATH", ""), "DISPATCHER_BROKER_URL": "amqp://u:hunter2-secret@mq.example//"}
    stack = DevStack(tmp_path / "dev", environ=env, out=out, err=out)
    try:
        stack._choose_redis()
        assert "dev: DISPATCHER_BROKER_URL is not used: the embedded Redis is the broker too" in out.getvalue()
        assert "hunter2" not in out.getvalue()
        assert "DISPATCHER_BROKER_URL" not in stack.child_env()
    finally:
        if stack.redis is not None:
            stack.redis.stop()
