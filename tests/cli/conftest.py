"""Fixtures of the CLI's tests: invoking ``dispatcher`` in this process (click's CliRunner)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from dispatcher.cli.main import cli


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
