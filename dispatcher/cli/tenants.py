"""``dispatcher tenant ...``: tenants, whose endpoints receive only their own events."""

from __future__ import annotations

import json
from typing import Any

import click

from dispatcher.cli.config import cli_settings
from dispatcher.client import Dispatcher


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@click.group()
def tenant() -> None:
    """Tenants: subscribe with --tenant ID, enqueue with --tenant ID; each receives only its own events."""


def _limit_options(fn: Any) -> Any:
    fn = click.option("--max-per-day", type=click.IntRange(min=1), default=None,
                      help="Events accepted per UTC day (default: no limit).")(fn)  # fmt: skip
    return click.option("--max-per-s", type=click.IntRange(min=1), default=None,
                        help="Events accepted per second (default: no limit).")(fn)  # fmt: skip


@tenant.command("create")
@click.argument("tenant_id")
@click.option("--name", default="", help="A label for people.")
@_limit_options
def create(tenant_id: str, name: str, max_per_s: int | None, max_per_day: int | None) -> None:
    """Create tenant TENANT_ID (letters, digits, '_', '-', '.'); past a limit, its events are refused."""
    dsp = Dispatcher(cli_settings())
    try:
        _echo(dsp.create_tenant(tenant_id, name, max_per_s, max_per_day).model_dump())
    finally:
        dsp.close()


@tenant.command("limits")
@click.argument("tenant_id")
@_limit_options
def limits(tenant_id: str, max_per_s: int | None, max_per_day: int | None) -> None:
    """Replace TENANT_ID's limits (an option left out: no limit)."""
    dsp = Dispatcher(cli_settings())
    try:
        _echo(dsp.set_tenant_limits(tenant_id, max_per_s, max_per_day).model_dump())
    finally:
        dsp.close()


@tenant.command("list")
def list_() -> None:
    """List tenants ('default' holds endpoints and events that name none)."""
    dsp = Dispatcher(cli_settings())
    try:
        _echo([t.model_dump() for t in dsp.list_tenants()])
    finally:
        dsp.close()


@tenant.command("token")
@click.argument("tenant_id")
def token(tenant_id: str) -> None:
    """Issue an API token that reaches only TENANT_ID's resources (printed once)."""
    dsp = Dispatcher(cli_settings())
    try:
        click.echo(dsp.issue_tenant_token(tenant_id))
    finally:
        dsp.close()
    click.echo("Store the token now: it is not shown again. Deleting the tenant revokes it.", err=True)


@tenant.command("delete")
@click.argument("tenant_id")
def delete(tenant_id: str) -> None:
    """Delete tenant TENANT_ID, its endpoints and their pending deliveries."""
    dsp = Dispatcher(cli_settings())
    try:
        _echo({"deleted": tenant_id, "purged": dsp.delete_tenant(tenant_id)})
    finally:
        dsp.close()
