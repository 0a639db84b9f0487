"""Running a selection of the benchmark's steps against one Redis, and what is kept of it: the figures
(``results``, written as JSON) and the chart's data."""

from __future__ import annotations

import importlib.util
import os
import platform
from typing import Any

import redis

from dispatcher.bench import baselines, flower, scenarios, tenants  # noqa: F401  (importing them registers their steps)
from dispatcher.bench.chart import ChartData
from dispatcher.bench.harness import Bench, BenchError
from dispatcher.bench.registry import STEPS, Step
from dispatcher.settings import Settings
from dispatcher.worker.runtime import new_event_loop

INSTALL_HINT = {"requests": "pip install 'webhook-dispatcher[bench]'"}


def load() -> list[Step]:
    """Every registered step in run order: the baselines first, then the scenarios as registered."""
    steps = list(STEPS.values())
    return [s for s in steps if s.baseline] + [s for s in steps if not s.baseline]


def select(only: list[str] | None) -> list[Step]:
    """The steps to run, in run order; ``only`` names a subset (unknown names are an error)."""
    steps = load()
    if not only:
        return steps
    known = {s.name for s in steps}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise ValueError(f"unknown benchmark step(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [s for s in steps if s.name in only]


def check_requirements(steps: list[Step]) -> None:
    for s in steps:
        for module in s.requires:
            if importlib.util.find_spec(module) is None:
                hint = INSTALL_HINT.get(module, f"pip install {module}")
                raise BenchError(f"the {s.name!r} step needs {module}: {hint} (or leave it out with --only)")


DEFAULT_ENGINE = str(Settings.model_fields["http_engine"].default)


def machine(redis_url: str, workers: int, embedded: bool) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    try:
        version = client.info("server")["redis_version"]
    finally:
        client.close()
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "event_loop": type(new_event_loop()).__module__.split(".")[0],
            "redis": version, "redis_embedded": embedded, "workers": workers,
            "http_engine": os.environ.get("DISPATCHER_HTTP_ENGINE") or DEFAULT_ENGINE}  # fmt: skip


def describe_machine(m: dict[str, Any]) -> str:
    embedded = " (embedded)" if m["redis_embedded"] else ""
    return (f"{m['cores']} cores, Python {m['python']}, Redis {m['redis']}{embedded}, "
            f"{m['workers']} worker processes, {m['event_loop']} event loop, "
            f"{m.get('http_engine', 'aiohttp')} HTTP engine")  # fmt: skip


def run(bench: Bench, steps: list[Step], embedded: bool = False) -> dict[str, Any]:
    """Run ``steps`` in order (starting the workers before the first that needs them); the figures."""
    check_requirements(steps)
    bench.results["machine"] = machine(bench.redis_url, bench.workers, embedded)
    bench.line("machine: " + describe_machine(bench.results["machine"]))
    try:
        bench.start_receiver()
        for s in steps:
            if s.needs_workers and bench.worker_proc is None:
                bench.start_workers()
            bench.results[s.name] = s.run(bench)
    finally:
        bench.stop()
    return bench.results


def chart_data(results: dict[str, Any], quick: bool = False) -> ChartData:
    """What the chart shows of ``results`` (each step's own ``chart`` function decides its part)."""
    steps = {s.name: s for s in load()}
    parts = [steps[name].chart(figures) for name, figures in results.items() if name in steps]
    m = results.get("machine")
    subtitle = describe_machine(m) if m else ""
    title = "dispatcher bench" + (" --quick (small sizes)" if quick else "")
    return ChartData(title=title, subtitle=subtitle, parts=parts)
