"""``dispatcher bench``: the shipped benchmark (see README, "Performance"); the work is in ``dispatcher/bench/``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from dispatcher.cli.embedded import EmbeddedRedis, reachable


@click.command("bench")
@click.option("--quick", is_flag=True, help="Small sizes: runs in well under a minute.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Write the figures to FILE as JSON.")  # fmt: skip
@click.option("--chart", "chart_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.svg", help="Draw throughput and latency to FILE.svg.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: CPU count).")  # fmt: skip
@click.option("--redis-url", default=None, help="Use this Redis (default: an embedded one). Keys get a prefix "
              "of the run's own and are deleted at the end.")  # fmt: skip
@click.option("--only", default=None, metavar="NAMES",
              help="Comma-separated steps to run (default: all; see --list).")  # fmt: skip
@click.option("--list", "list_steps", is_flag=True, help="List the steps and exit.")
def bench(
    quick: bool,
    json_file: Path | None,
    chart_file: Path | None,
    workers: int | None,
    redis_url: str | None,
    only: str | None,
    list_steps: bool,
) -> None:
    """Measure this machine: the baselines (a) the ceiling, the fastest of the candidate HTTP clients
    (aiohttp, reqwest) posting with no Redis/Celery, and (b) one Celery task per delivery doing
    requests.post, then the scenarios (fan-out, one-to-one, enqueue(), latency, isolation from hanging
    endpoints, a backlog of retries), all on one signature-checking receiver. The workers deliver with
    DISPATCHER_HTTP_ENGINE (default reqwest).

    Results go to stdout, progress to stderr (a bar on a terminal, plain lines otherwise).
    """
    from dispatcher.bench.chart import render
    from dispatcher.bench.harness import Bench, BenchError, Sizes
    from dispatcher.bench.progress import Progress
    from dispatcher.bench.run import chart_data, run, select

    if list_steps:
        for s in select(None):
            click.echo(s.name + (" (baseline)" if s.baseline else ""))
        return
    try:
        steps = select([n.strip() for n in only.split(",") if n.strip()] if only else None)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if chart_file is not None and chart_file.suffix.lower() != ".svg":
        raise click.UsageError("--chart writes SVG: give a FILE ending in .svg")
    embedded = None
    if redis_url:
        if not reachable(redis_url):
            raise click.ClickException(f"no Redis answers at --redis-url {redis_url}")
        url = redis_url
    else:
        embedded = EmbeddedRedis().start()
        url = embedded.url
    runner = Bench(url, workers or os.cpu_count() or 2, Sizes.quick() if quick else Sizes(), progress=Progress())
    try:
        results = run(runner, steps, embedded=embedded is not None)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if embedded is not None:
            embedded.stop()
    if json_file is not None:
        json_file.write_text(json.dumps(results, indent=2) + "\n")
    if chart_file is not None:
        chart_file.write_text(render(chart_data(results, quick=quick)))
        click.echo(f"chart: {chart_file}")
