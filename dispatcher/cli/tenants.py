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


@tenant.command("create")
@click.argument("tenant_id")
@click.option("--name", default="", help="A label for people.")
def create(tenant_id: str, name: str) -> None:
    """Create tenant TENANT_ID (letters, digits, '_', '-', '.')."""
    dsp = Dispatcher(cli_settings())
    try:
        _echo(dsp.create_tenant(tenant_id, name).model_dump())
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


@tenant.command("delete")
@click.argument("tenant_id")
def delete(tenant_id: str) -> None:
    """Delete tenant TENANT_ID, its endpoints and their pending deliveries."""
    dsp = Dispatcher(cli_settings())
    try:
        _echo({"deleted": tenant_id, "purged": dsp.delete_tenant(tenant_id)})
    finally:
        dsp.close()
