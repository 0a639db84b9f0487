"""``dispatcher listen``: a pull consumer on the command line, against ``dispatcher api`` in its own process."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from click.testing import CliRunner

from dispatcher import Dispatcher
from dispatcher.cli.main import cli
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import ApiServer


def test_listen_prints_events_as_they_arrive(
    api_server: ApiServer, dsp: Dispatcher, runtime: Runtime, api_key: str
) -> None:
    poll = dsp.subscribe_poll(["order.*"])
    ids = dsp.enqueue_many([("order.paid", {"n": i}) for i in range(3)])
    run_fanout(runtime)
    args = [
        "listen",
        poll.id,
        "--url",
        api_server.url,
        "--secret",
        poll.secret,
        "--from-start",
        "--count",
        "3",
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(ids)
    assert all(line["verified"] is True and line["type"] == "order.paid" for line in lines)
    assert f"--cursor {lines[-1]['cursor']}" in result.stderr
    ws_args = [*args[:4], "--ws", "--from-start", "--count", "1"]
    result = CliRunner().invoke(cli, ws_args, env={"DISPATCHER_API_KEY": api_key})
    assert result.exit_code == 0, result.output
    assert "--> order.paid [" in result.stdout
