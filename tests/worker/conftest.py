"""Fixtures of the worker's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.cli.embedded import EmbeddedRedis, free_port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of this test's own (AOF, fsync every second) that the test may stop and restart
    (``own_redis.process.terminate()``, then ``own_redis.process = None; own_redis.start()``)."""
    server = EmbeddedRedis(directory=tmp_path / "redis", port=free_port(), appendonly=True)
    server.start()
    yield server
    server.stop()
