"""The ``dispatcher`` command line: manage endpoints, publish events, inspect and replay deliveries, run processes.

Every command reads its configuration once from the environment (``DISPATCHER_*``, see
``dispatcher.settings``). Records are printed as JSON; listings as a compact table (``--json`` for
JSON). Failures print one ``Error: ...`` line on stderr and exit non-zero, never a traceback:

* exit 2 -- bad input (a usage error, unparseable JSON, an ``InvalidInput`` from the dispatcher);
* exit 1 -- anything else (not found, invalid state, Redis or the broker unreachable, bad configuration).

Endpoint secrets are printed once, by ``subscribe``; every other command shows them masked.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from pydantic import ValidationError

from dispatcher.cli.bench import bench
from dispatcher.cli.config import cli_dispatcher, echo_json
from dispatcher.cli.event_types import event_types
from dispatcher.cli.flower import flower
from dispatcher.cli.processes import api, dev, scheduler, worker
from dispatcher.cli.pull import listen, subscribe_poll
from dispatcher.cli.tenants import portal_link, tenant
from dispatcher.errormap import translate
from dispatcher.errors import DispatcherError, EventNotFound, InvalidInput, StoreUnavailable
from dispatcher.models import Delivery, DeliveryState, Endpoint
from dispatcher.robots import ROBOT_KINDS
from dispatcher.version import __version__

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(click.ClickException):
    """A one-line error for the user (exit 1)."""

    exit_code = EXIT_FAILURE


class CliInputError(CliError):
    """A one-line error about input that can never succeed (exit 2)."""

    exit_code = EXIT_USAGE


def _settings_error(exc: ValidationError) -> CliError:
    """Name each invalid ``DISPATCHER_*`` variable without echoing its value (it may hold a password)."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in err.get("loc", ()))
        name = f"DISPATCHER_{field.upper()}" if field else "settings"
        problems.append(f"{name}: {err.get('msg', 'invalid')}")
    return CliError("invalid configuration: " + "; ".join(problems))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# what a command taking an event id says when it was given another kind of id
WRONG_ID_HINTS = {
    "dlv": ": that is a delivery id; this command takes the event's id (msg_...), e.g. from `dispatcher enqueue`",
    "ep": ": that is an endpoint id; for its deliveries run `dispatcher endpoint-deliveries ID`",
}
UNREACHABLE_HINT = "; check that Redis runs and that DISPATCHER_REDIS_URL points at it"


def _error_line(exc: DispatcherError) -> str:
    """The one line shown for ``exc``, with what to check when Redis cannot be reached."""
    if isinstance(exc, StoreUnavailable):
        return _one_line(exc).rstrip(".") + UNREACHABLE_HINT
    return _one_line(exc)


class DispatcherGroup(click.Group):
    """Turns the dispatcher's own errors, and Redis or broker failures, into clean ``CliError``s."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidInput as exc:
            raise CliInputError(_one_line(exc)) from None
        except DispatcherError as exc:
            raise CliError(_error_line(exc)) from None
        except ValidationError as exc:
            raise _settings_error(exc) from None
        except Exception as exc:
            mapped = translate(exc)  # Redis or the broker failing: one clean line too
            if mapped is None or mapped is exc:
                raise
            raise CliError(_error_line(mapped)) from None


# -- helpers ----------------------------------------------------------------------------------
def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _endpoint_rows(endpoints: Sequence[Endpoint]) -> list[list[object]]:
    rows: list[list[object]] = []
    for ep in endpoints:
        masked = ep.masked()
        state = "yes" if ep.enabled else f"no ({ep.disabled_reason})" if ep.disabled_reason else "no"
        rows.append(
            [ep.id, masked["url"], ",".join(ep.event_types), state, ep.max_batch, masked["secret"], ep.description]
        )
    return rows


def _last_outcome(d: Delivery) -> str:
    if not d.attempts:
        return "-"
    last = d.attempts[-1]
    if last.status is not None:
        return str(last.status)
    return last.error or "-"


def _print_deliveries(found: Sequence[Delivery], as_json: bool, other: str) -> None:
    if as_json:
        echo_json([d.model_dump(mode="json") for d in found])
        return
    head = "EVENT" if other == "event" else "ENDPOINT"
    rows: list[list[object]] = [
        [
            d.id,
            d.event_id if other == "event" else d.endpoint_id,
            d.state.value,
            len(d.attempts),
            _last_outcome(d),
            _when(d.next_attempt_at),
            _when(d.created_at),
        ]
        for d in found
    ]
    click.echo(_table(["ID", head, "STATE", "ATTEMPTS", "LAST", "NEXT ATTEMPT", "CREATED (UTC)"], rows))


def _json_option(fn: Callable[P, R]) -> Callable[P, R]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


# -- the commands -----------------------------------------------------------------------------
@click.group(cls=DispatcherGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dispatcher")
def cli() -> None:
    """Signed, retried, batched webhook delivery on Redis and Celery.

    Configuration comes from DISPATCHER_* environment variables (e.g. DISPATCHER_REDIS_URL).
    Start a local stack with `dispatcher dev`.
    """


@cli.command()
@click.argument("url")
@click.option("-t", "--type", "event_types", multiple=True, metavar="PATTERN",
              help="Event type to receive: '*', an exact type, or 'prefix.*'. Repeatable; default '*'.")  # fmt: skip
@click.option("--secret", default=None, help="Signing secret (whsec_...); generated when omitted.")
@click.option("--max-batch", type=int, default=None, help="Deliver up to N events per request (default 1).")
@click.option("--retry-schedule", default=None, metavar="SECONDS",
              help="Comma-separated retry delays, e.g. '5,300,1800' (default: the global schedule).")  # fmt: skip
@click.option("--description", default=None, help="Free text shown in listings.")
@click.option("--kind", type=click.Choice(["webhook", *ROBOT_KINDS]), default=None,
              help="webhook, or a chat robot. Default: recognised from the URL's host, else webhook.")  # fmt: skip
@click.option("--template", default=None, help="Chat robots: message template, e.g. 'Order {data.order.id} paid'.")
@click.option("--robot-secret", default=None, help="DingTalk / Feishu: the robot's signing secret (SEC...).")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), default=None, metavar="PER_S",
              help="At most this many requests per second (chat robots: default their platform's rate).")  # fmt: skip
@click.option("--tenant", default=None, help="The tenant whose events it receives (default: 'default').")
def subscribe(
    url: str,
    event_types: tuple[str, ...],
    secret: str | None,
    max_batch: int | None,
    retry_schedule: str | None,
    description: str | None,
    kind: str | None,
    template: str | None,
    robot_secret: str | None,
    rate_limit: float | None,
    tenant: str | None,
) -> None:
    """Subscribe URL to events; prints the endpoint with its secret (shown only this once).

    A chat robot's URL (Slack, Discord, Teams, DingTalk, Feishu/Lark, WeCom) is recognised: its events
    arrive as chat messages.
    """
    options: dict[str, Any] = {}
    for name, value in (("kind", kind), ("template", template), ("robot_secret", robot_secret),
                        ("rate_limit_per_s", rate_limit), ("tenant", tenant)):  # fmt: skip
        if value is not None:
            options[name] = value
    if max_batch is not None:
        options["max_batch"] = max_batch
    if retry_schedule is not None:
        options["retry_schedule"] = retry_schedule
    if description is not None:
        options["description"] = description
    with cli_dispatcher() as dsp:
        endpoint = dsp.subscribe(url, event_types or ("*",), secret, **options)
    echo_json({**endpoint.masked(), "url": endpoint.url, "secret": endpoint.secret})  # robot secret stays masked
    for warning in endpoint.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo("Store the secret now: verify signatures with it. It is not shown again.", err=True)


@cli.command()
@click.argument("endpoint_id")
def unsubscribe(endpoint_id: str) -> None:
    """Delete an endpoint; its pending deliveries are dropped when they come due."""
    with cli_dispatcher() as dsp:
        dsp.unsubscribe(endpoint_id)
    echo_json({"unsubscribed": endpoint_id})


@cli.command()
@_json_option
@click.option("--tenant", default=None, help="Only this tenant's endpoints.")
def endpoints(as_json: bool, tenant: str | None) -> None:
    """List endpoints (secrets masked)."""
    with cli_dispatcher() as dsp:
        found = dsp.list_endpoints(tenant=tenant)
    if as_json:
        echo_json([ep.masked() for ep in found])
    else:
        click.echo(_table(["ID", "URL", "TYPES", "ENABLED", "BATCH", "SECRET", "DESCRIPTION"], _endpoint_rows(found)))


@cli.command()
@click.argument("endpoint_id")
def enable(endpoint_id: str) -> None:
    """Enable an endpoint again (prints it, secret masked)."""
    with cli_dispatcher() as dsp:
        endpoint = dsp.enable_endpoint(endpoint_id)
    echo_json(endpoint.masked())


@cli.command()
@click.argument("endpoint_id")
@click.option("--reason", default=None, help="Why, shown in listings.")
def disable(endpoint_id: str, reason: str | None) -> None:
    """Disable an endpoint: nothing is sent to it until it is enabled (prints it, secret masked)."""
    with cli_dispatcher() as dsp:
        endpoint = dsp.disable_endpoint(endpoint_id, reason)
    echo_json(endpoint.masked())


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


@cli.command()
@click.argument("event_type", metavar="TYPE")
@click.argument("data", metavar="JSON")
@click.option("--id", "event_id", default=None, help="Event id (default: generated). Re-using one sends nothing again.")
@click.option("--idempotency-key", default=None, help="Events with a key already seen are not sent again.")
@click.option("--tenant", default=None, help="Only this tenant's endpoints receive it (default: 'default').")
def enqueue(event_type: str, data: str, event_id: str | None, idempotency_key: str | None, tenant: str | None) -> None:
    """Publish an event of TYPE whose data is JSON ('-' reads it from stdin); prints the event id."""
    text = sys.stdin.read() if data == "-" else data
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise CliInputError(f"event data is not valid JSON: {_one_line(exc)}") from None
    with cli_dispatcher() as dsp:
        new_id = dsp.enqueue(event_type, payload, event_id=event_id, idempotency_key=idempotency_key, tenant=tenant)
    click.echo(new_id)


@cli.command()
@click.argument("event_id")
@_json_option
def deliveries(event_id: str, as_json: bool) -> None:
    """Show every delivery of an event, with its state and attempts (none until it is fanned out)."""
    with cli_dispatcher() as dsp:
        try:
            found = dsp.deliveries(event_id)
        except EventNotFound as exc:
            hint = WRONG_ID_HINTS.get(event_id.split("_", 1)[0])
            raise CliError(f"no event {event_id!r}{hint}" if hint else _one_line(exc)) from None
    _print_deliveries(found, as_json, "endpoint")


@cli.command("endpoint-deliveries")
@click.argument("endpoint_id")
@click.option("--state", type=click.Choice([s.value for s in DeliveryState]), default=None,
              help="Only deliveries in this state ('dead' reads the dead-letter queue).")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@_json_option
def endpoint_deliveries(endpoint_id: str, state: str | None, limit: int, as_json: bool) -> None:
    """Show an endpoint's deliveries, newest first."""
    with cli_dispatcher() as dsp:
        found = dsp.endpoint_deliveries(endpoint_id, state, limit)
    _print_deliveries(found, as_json, "event")


@cli.command()
@click.argument("delivery_id", required=False)
@click.option("--endpoint", "endpoint_id", default=None, help="Replay every dead delivery of this endpoint.")
@click.option("--since", type=float, default=None, metavar="UNIX_TS",
              help="With --endpoint: only deliveries dead-lettered at or after this time.")  # fmt: skip
def replay(delivery_id: str | None, endpoint_id: str | None, since: float | None) -> None:
    """Send dead deliveries again: DELIVERY_ID, or all of --endpoint ID. Prints how many."""
    if delivery_id is None and endpoint_id is None:
        raise click.UsageError("give the DELIVERY_ID of a dead delivery, or --endpoint ID to replay its dead ones")
    if delivery_id is not None and endpoint_id is not None:
        raise click.UsageError("give either a DELIVERY_ID or --endpoint ID, not both")
    if since is not None and endpoint_id is None:
        raise click.UsageError("--since only applies with --endpoint")
    with cli_dispatcher() as dsp:
        n = dsp.replay(delivery_id, endpoint_id=endpoint_id, since=since)
    echo_json({"replayed": n})


@cli.command()
@_json_option
def stats(as_json: bool) -> None:
    """Print throughput, failures, queue depth, pending retries and dead letters (the /metrics figures)."""
    from dispatcher.cli.stats import format_stats

    with cli_dispatcher() as d:
        figures = d.stats()
    if as_json:
        echo_json(figures)
    else:
        click.echo(format_stats(figures))


cli.add_command(worker)
cli.add_command(scheduler)
cli.add_command(api)
cli.add_command(dev)
cli.add_command(subscribe_poll)
cli.add_command(listen)
cli.add_command(flower)
cli.add_command(bench)
cli.add_command(event_types)
cli.add_command(tenant)
cli.add_command(portal_link)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``dispatcher``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="dispatcher")


__all__ = ["CliError", "CliInputError", "cli", "main"]

if __name__ == "__main__":
    main()
