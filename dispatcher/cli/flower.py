"""``dispatcher flower``: Flower on ``workers.app``, never unauthenticated on a public interface.

Flower's pages and API show every delivery attempt (endpoint id, host, event type, reason) and can
revoke tasks, so:

* on a loopback address without authentication, the pages *and* the API are open (the API is what
  scripts and ``curl http://127.0.0.1:5555/api/tasks`` use; Flower closes it by default);
* on any other address, authentication is required: ``FLOWER_BASIC_AUTH=user:password`` (or Flower's
  ``FLOWER_AUTH`` with an OAuth provider), else the command refuses to start.
"""

from __future__ import annotations

import ipaddress
import os
import sys

import click

from dispatcher.cli.config import cli_settings
from dispatcher.cli.processes import exec_process as _exec  # the seam tests replace
from dispatcher.store import connect

DEFAULT_MAX_TASKS = 10_000  # tasks Flower keeps in memory (its own default); older ones are dropped
AUTH_ENV = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")
AUTH_OPTIONS = ("--basic-auth", "--basic_auth", "--auth")


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an interface to bind) is reachable from this machine only."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def has_auth(environ: dict[str, str], flower_args: tuple[str, ...]) -> bool:
    return any(environ.get(name) for name in AUTH_ENV) or any(a.split("=")[0] in AUTH_OPTIONS for a in flower_args)


def flower_argv(address: str, port: int, max_tasks: int, flower_args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", "flower", f"--address={address}", f"--port={port}",
            f"--max_tasks={max_tasks}", *flower_args]  # fmt: skip


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--max-tasks", type=click.IntRange(min=1), default=DEFAULT_MAX_TASKS, show_default=True,
              help="Tasks (delivery attempts) Flower keeps in memory; older ones are dropped.")  # fmt: skip
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(address: str, port: int, max_tasks: int, flower_args: tuple[str, ...]) -> None:
    """Run Flower: each webhook delivery attempt is a task (SUCCESS, RETRY, FAILURE = dead-lettered).

    On a non-loopback --address, set FLOWER_BASIC_AUTH=user:password (or FLOWER_AUTH) first. On loopback
    without authentication its API is open to local scripts. Extra arguments go to `celery flower`.
    """
    settings = cli_settings()  # fail here, cleanly, on a bad environment (or no Redis)
    connect(settings).close()  # or a Redis the dispatcher cannot run on (a Cluster node, an unknown Sentinel name)
    authenticated = has_auth(dict(os.environ), flower_args)
    if not is_loopback(address) and not authenticated:
        raise click.UsageError(
            f"refusing to serve Flower on {address} without authentication: set FLOWER_BASIC_AUTH=user:password "
            "(or FLOWER_AUTH), or listen on 127.0.0.1"
        )
    if not authenticated:
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
        click.echo(f"Flower on http://{address}:{port} (loopback, no authentication: pages and API open)", err=True)
    _exec(flower_argv(address, port, max_tasks, flower_args))
