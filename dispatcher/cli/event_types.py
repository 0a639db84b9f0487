"""``dispatcher event-types``: register, show, list and remove event types (added in ``dispatcher.cli``).

Errors (a schema that is not JSON Schema, an example that does not match it, an unknown type) become
one ``Error:`` line through ``dispatcher.cli.main.DispatcherGroup``; bad input exits 2.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from dispatcher.cli.config import cli_dispatcher, echo_json
from dispatcher.errors import InvalidInput


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _read_json(path: str, what: str) -> Any:
    """The JSON in file ``path`` ('-': stdin); unreadable or not JSON: ``InvalidInput`` (exit 2)."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the {what} file {path!r}: {exc}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InvalidInput(f"the {what} file {path!r} is not valid JSON: {' '.join(str(exc).split())}") from None


@click.group("event-types")
def event_types() -> None:
    """The event-type catalog: each type's description, JSON Schema and example. Events of a registered type
    whose data does not match its schema are refused."""


@event_types.command()
@click.argument("name")
@click.option("--schema", "schema_file", required=True, metavar="FILE", help="JSON Schema file ('-': stdin).")
@click.option("--example", "example_file", default=None, metavar="FILE", help="Example data file; must match.")
@click.option("--description", default="", help="What the event means, shown where types are offered.")
def register(name: str, schema_file: str, example_file: str | None, description: str) -> None:
    """Register (or replace) event type NAME; prints it."""
    if schema_file == "-" and example_file == "-":
        raise InvalidInput("only one of --schema and --example can read stdin")
    schema = _read_json(schema_file, "schema")
    example = None if example_file is None else _read_json(example_file, "example")
    with cli_dispatcher() as dsp:
        registered = dsp.event_types.register(name, description=description, schema=schema, example=example)
    echo_json(registered.as_dict())


@event_types.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schemas and examples included).")
def list_types(as_json: bool) -> None:
    """List registered event types."""
    with cli_dispatcher() as dsp:
        found = dsp.event_types.list()
    if as_json:
        echo_json([t.as_dict() for t in found])
        return
    if not found:
        click.echo("no event types registered")
        return
    width = max(len(t.name) for t in found)
    for t in found:
        click.echo(f"{t.name.ljust(width)}  {t.description}".rstrip())


@event_types.command()
@click.argument("name")
def show(name: str) -> None:
    """Print event type NAME with its schema and example."""
    with cli_dispatcher() as dsp:
        found = dsp.event_types.get(name)
    echo_json(found.as_dict())


@event_types.command()
@click.argument("name")
def remove(name: str) -> None:
    """Unregister event type NAME: its events are no longer checked."""
    with cli_dispatcher() as dsp:
        dsp.event_types.unregister(name)
    echo_json({"removed": name})
