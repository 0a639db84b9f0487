"""The benchmark's steps, in the order they run: the baselines first, then the scenarios.

A step is a function ``(Bench) -> figures`` registered with ``@step(...)``; its figures go into the JSON
under its name, ``--only`` selects steps by name, and its ``chart`` function says what the chart shows of
it. Adding a scenario is one decorated function in ``scenarios.py`` (or a module that ``run.py`` imports,
as it does ``flower.py``); the registry imports none of them, so imports run one way (steps -> registry)::

    @step("flower", chart=lambda r: Part(throughput=[("7 with Flower attached", r["per_s"])]))
    def flower(bench: Bench) -> dict[str, Any]:
        ...  # bench.spawn([...flower...]); figures = scenarios.throughput(bench, "flower", events, endpoints)
        bench.line("7 with Flower attached: ...")
        return figures
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dispatcher.bench.chart import Part
from dispatcher.bench.harness import Bench

Figures = dict[str, Any]
Runner = Callable[[Bench], Figures]


def _nothing(figures: Figures) -> Part:
    return Part()


@dataclass(frozen=True)
class Step:
    name: str
    run: Runner
    baseline: bool = False  # baselines run first, and scenarios are measured against them
    needs_workers: bool = True  # the dispatcher's workers are started before the first step that needs them
    requires: tuple[str, ...] = ()  # importable modules the step needs (checked before anything starts)
    chart: Callable[[Figures], Part] = field(default=_nothing)


STEPS: dict[str, Step] = {}


def step(
    name: str,
    *,
    baseline: bool = False,
    needs_workers: bool = True,
    requires: tuple[str, ...] = (),
    chart: Callable[[Figures], Part] = _nothing,
) -> Callable[[Runner], Runner]:
    """Register ``fn`` as the step ``name`` (registration order is run order, baselines first)."""

    def register(fn: Runner) -> Runner:
        if name in STEPS:
            raise ValueError(f"benchmark step {name!r} is registered twice")
        STEPS[name] = Step(name, fn, baseline, needs_workers, requires, chart)
        return fn

    return register
