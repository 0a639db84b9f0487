"""``dispatcher tenant ...``: tenants, whose endpoints receive only their own events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from dispatcher.cli.config import cli_dispatcher, echo_json


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
    with cli_dispatcher() as dsp:
        echo_json(dsp.create_tenant(tenant_id, name, max_per_s, max_per_day).model_dump())


@tenant.command("limits")
@click.argument("tenant_id")
@_limit_options
def limits(tenant_id: str, max_per_s: int | None, max_per_day: int | None) -> None:
    """Replace TENANT_ID's limits (an option left out: no limit)."""
    with cli_dispatcher() as dsp:
        echo_json(dsp.set_tenant_limits(tenant_id, max_per_s, max_per_day).model_dump())


@tenant.command("list")
def list_() -> None:
    """List tenants ('default' holds endpoints and events that name none)."""
    with cli_dispatcher() as dsp:
        echo_json([t.model_dump() for t in dsp.list_tenants()])


@tenant.command("token")
@click.argument("tenant_id")
def token(tenant_id: str) -> None:
    """Issue an API token that reaches only TENANT_ID's resources (printed once)."""
    with cli_dispatcher() as dsp:
        click.echo(dsp.issue_tenant_token(tenant_id))
    click.echo("Store the token now: it is not shown again. Deleting the tenant revokes it.", err=True)


@tenant.command("delete")
@click.argument("tenant_id")
def delete(tenant_id: str) -> None:
    """Delete tenant TENANT_ID, its endpoints and their pending deliveries."""
    with cli_dispatcher() as dsp:
        echo_json({"deleted": tenant_id, "purged": dsp.delete_tenant(tenant_id)})


@click.command("portal-link")
@click.argument("tenant_id")
@click.option(
    "--base-url", default=None, metavar="URL", help="Where browsers reach the API (default: DISPATCHER_PUBLIC_URL)."
)
def portal_link(tenant_id: str, base_url: str | None) -> None:
    """Print a link to TENANT_ID's consumer portal: it opens once, within DISPATCHER_PORTAL_LINK_TTL_S."""
    with cli_dispatcher() as dsp:
        link = dsp.portal_link(tenant_id, base_url)
    click.echo(link.url)
    until = datetime.fromtimestamp(link.expires_at, UTC).strftime("%H:%M:%S UTC")
    click.echo(f"Opens {tenant_id}'s portal once, until {until}; it is a credential: send it privately.", err=True)
