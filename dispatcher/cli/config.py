"""The CLI's settings (read once per command from the environment, with the Redis chosen up front), the
command's one ``Dispatcher``, and how records are printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from dispatcher.client import Dispatcher
from dispatcher.settings import Settings


def cli_settings() -> Settings:
    """``Settings()`` with its Redis chosen now (``Settings.redis_choice()``), so a command without one fails
    with a clean ``Error:`` line before doing anything; when it is a running ``dispatcher dev``'s Redis
    (no ``DISPATCHER_REDIS_URL``), one line on stderr says so."""
    settings = Settings()
    choice = settings.redis_choice()
    if choice.from_devstack:
        click.echo(f"dispatcher: using {choice.describe()}", err=True)
    return settings


@contextmanager
def cli_dispatcher() -> Iterator[Dispatcher]:
    """One Settings() and one Dispatcher for the command; closed when it is done."""
    dsp = Dispatcher(cli_settings())
    try:
        yield dsp
    finally:
        dsp.close()


def echo_json(value: Any) -> None:
    """A record or listing as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
