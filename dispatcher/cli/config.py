"""The CLI's settings: read once per command from the environment, with the Redis chosen up front."""

from __future__ import annotations

import click

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
