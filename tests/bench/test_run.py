"""Choosing the steps and refusing what cannot run, before any process starts."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from dispatcher.bench.harness import Bench, BenchError
from dispatcher.bench.registry import STEPS, Step, step
from dispatcher.bench.run import check_requirements, load, select
from dispatcher.cli.main import cli


def test_baselines_run_first_then_the_scenarios_in_readme_order() -> None:
    assert [s.name for s in load()] == [
        "ceiling", "handwritten", "fanout", "one_to_one", "enqueue", "latency", "isolation", "backlog", "flower",
        "tenants",
    ]  # fmt: skip
    assert [s.name for s in select(["backlog", "ceiling"])] == ["ceiling", "backlog"]


def test_a_registered_step_joins_the_run_and_the_chart() -> None:
    @step("extra_test_step", chart=lambda r: __import__("dispatcher.bench.chart").bench.chart.Part(
        throughput=[("extra", r["per_s"])]))  # fmt: skip
    def extra(bench: Bench) -> dict[str, Any]:
        return {"per_s": 1}

    try:
        assert load()[-1].name == "extra_test_step"
        assert STEPS["extra_test_step"].chart({"per_s": 5}).throughput == [("extra", 5)]
        with pytest.raises(ValueError, match="registered twice"):
            step("extra_test_step")(extra)
    finally:
        del STEPS["extra_test_step"]


def test_a_missing_module_is_named_with_how_to_install_it() -> None:
    needy = Step("needy", lambda bench: {}, requires=("requests", "no_such_module_for_bench"))
    with pytest.raises(BenchError, match="'needy' step needs no_such_module_for_bench: pip install"):
        check_requirements([needy])
    check_requirements(load())  # the test extra has everything


def test_unknown_step_names_are_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["bench", "--only", "fanout,nope"])
    assert result.exit_code == 2
    assert "unknown benchmark step(s) nope" in result.output


def test_an_unreachable_redis_is_an_error_not_a_fallback() -> None:
    result = CliRunner().invoke(cli, ["bench", "--quick", "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 1
    assert "no Redis answers at --redis-url redis://127.0.0.1:1/0" in result.output


def test_the_chart_is_svg() -> None:
    result = CliRunner().invoke(cli, ["bench", "--chart", "figures.png"])
    assert result.exit_code == 2 and "--chart writes SVG" in result.output


def test_list_names_every_step() -> None:
    result = CliRunner().invoke(cli, ["bench", "--list"])
    assert result.exit_code == 0
    assert result.output.split() == [
        "ceiling", "(baseline)", "handwritten", "(baseline)", "fanout", "one_to_one", "enqueue", "latency",
        "isolation", "backlog", "flower", "tenants",
    ]  # fmt: skip
