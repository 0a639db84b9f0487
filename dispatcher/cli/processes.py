"""The commands that run a process: ``worker``, ``scheduler``, ``api`` (each replaces the CLI's process with
its own) and ``dev`` (a whole local stack, in the foreground)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from dispatcher.cli.config import cli_settings
from dispatcher.settings import Settings, check_api_config


def cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def exec_process(argv: list[str]) -> NoReturn:
    """Replace this process with ``argv`` (a seam for tests)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker of workers.app; extra arguments go to `celery worker`.

    Defaults: task events on (-E, for Flower), log level info, concurrency = CPU count.
    Pass Celery's own options after `--` when they clash with ours, e.g. `dispatcher worker -- --help`.
    """
    cli_settings()  # fail here, cleanly, on a bad environment (or no Redis) rather than in Celery's import
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-E", "-l", "info",
            "-c", str(cpu_count()), *celery_args]  # fmt: skip
    exec_process(argv)  # options given later win, so the caller's -c / -l override ours


@click.command()
@click.option("--interval", type=click.FloatRange(min=0.01), default=None,
              help="Seconds between ticks (default: DISPATCHER_SCHEDULER_INTERVAL_S).")  # fmt: skip
@click.option("-l", "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def scheduler(interval: float | None, log_level: str) -> None:
    """Run the scheduler in the foreground: kicks workers when retries come due. Ctrl-C stops it."""
    cli_settings()  # fail here, cleanly, on a bad environment (or no Redis)
    argv = [sys.executable, "-m", "dispatcher.worker.scheduler", "-l", log_level]
    if interval is not None:
        argv += ["--interval", str(interval)]
    exec_process(argv)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the HTTP API, the web page (/) and Prometheus metrics (/metrics) under uvicorn.

    Needs DISPATCHER_API_KEYS (comma-separated bearer keys). One async process holds many
    connections; run more of them behind a load balancer to scale out.
    """
    check_api_config(cli_settings())  # a clean error here rather than in the server process
    exec_process([sys.executable, "-m", "dispatcher.api", "--host", host, "--port", str(port)])


@click.command()
@click.option("--port-flower", type=click.IntRange(1, 65535), default=5555, show_default=True,
              help="Port for Flower on 127.0.0.1.")  # fmt: skip
@click.option("--port-api", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="Port for the HTTP API and web page on 127.0.0.1.")  # fmt: skip
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".dispatcher-dev"), show_default=True,
              help="Where the embedded Redis keeps its data (persists across runs).")  # fmt: skip
@click.option("--port-redis", type=click.IntRange(1, 65535), default=None,
              help="Port for the embedded Redis (default: a free one).")  # fmt: skip
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: CPU count).")  # fmt: skip
@click.option("--startup-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for the stack to become ready.")  # fmt: skip
def dev(
    port_flower: int,
    port_api: int,
    directory: Path,
    port_redis: int | None,
    concurrency: int | None,
    startup_timeout: float,
) -> None:
    """Run a local stack: Redis (embedded unless DISPATCHER_REDIS_URL answers), a worker, the scheduler,
    Flower and the HTTP API with its web page.

    Loopback targets are allowed in this stack. Ctrl-C stops everything.
    """
    from dispatcher.cli.dev import DevStack

    Settings()  # validate the environment before starting anything
    stack = DevStack(
        directory,
        flower_port=port_flower,
        api_port=port_api,
        redis_port=port_redis,
        concurrency=concurrency,
        startup_timeout_s=startup_timeout,
    )
    code = stack.run()
    if code:
        sys.exit(code)
