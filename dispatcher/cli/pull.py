"""Pull consumers' commands, ``dispatcher subscribe-poll`` and ``dispatcher listen`` (added in ``dispatcher.cli``).

Errors raised here (``PullError``, ``CursorExpired``, Redis failures) become one ``Error:`` line through
``dispatcher.cli.DispatcherGroup``; bad options exit 2.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from dispatcher.cli.config import cli_settings
from dispatcher.client import Dispatcher
from dispatcher.errors import VerificationError
from dispatcher.receiver.pull import endpoint_token, iter_events, iter_events_ws


@click.command("subscribe-poll")
@click.option("-t", "--type", "event_types", multiple=True, metavar="PATTERN",
              help="Event type to receive: '*', an exact type, or 'prefix.*'. Repeatable; default '*'.")  # fmt: skip
@click.option("--secret", default=None, help="Signing secret (whsec_...); generated when omitted.")
@click.option("--description", default=None, help="Free text shown in listings.")
def subscribe_poll(event_types: tuple[str, ...], secret: str | None, description: str | None) -> None:
    """Register a pull consumer (kind poll, no URL); read it with `dispatcher listen ID`. Prints its secret once."""
    options: dict[str, Any] = {} if description is None else {"description": description}
    dsp = Dispatcher(cli_settings())
    try:
        endpoint = dsp.subscribe_poll(event_types or ("*",), secret, **options)
    finally:
        dsp.close()
    click.echo(json.dumps(endpoint.model_dump(mode="json"), indent=2, ensure_ascii=False, default=str))
    click.echo("Store the secret now: it verifies signatures and derives the pull token. Not shown again.", err=True)


@click.command()
@click.argument("endpoint_id")
@click.option("--url", "base_url", default="http://127.0.0.1:8000", show_default=True, envvar="DISPATCHER_API_URL",
              help="The dispatcher's HTTP API (env DISPATCHER_API_URL).")  # fmt: skip
@click.option("--api-key", default=None, envvar="DISPATCHER_API_KEY",
              help="An API key, or the endpoint's pull token whpt_... (env DISPATCHER_API_KEY).")  # fmt: skip
@click.option("--secret", default=None, envvar="DISPATCHER_ENDPOINT_SECRET",
              help="The endpoint's secret: derives its pull token (no --api-key) and verifies each event.")  # fmt: skip
@click.option("--ws", "use_ws", is_flag=True, help="Use the WebSocket stream instead of long-polling.")
@click.option("--cursor", default=None, help="Resume after this cursor (default: only events from now on).")
@click.option("--from-start", is_flag=True, help="Start from the oldest event the endpoint's log still holds.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Exit after N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event instead of a line.")
def listen(
    endpoint_id: str,
    base_url: str,
    api_key: str | None,
    secret: str | None,
    use_ws: bool,
    cursor: str | None,
    from_start: bool,
    count: int | None,
    as_json: bool,
) -> None:
    """Print the events of a pull endpoint (kind poll, or a webhook with also_poll) as they arrive.

    Long-polls the API (or holds its WebSocket with --ws), reconnecting with backoff. Ctrl-C stops;
    the last cursor is printed on stderr so that --cursor resumes right after it.
    """
    if api_key is None and secret is None:
        raise click.UsageError("give --api-key (or DISPATCHER_API_KEY), or the endpoint's --secret")
    try:
        credential = api_key or endpoint_token(endpoint_id, secret or "")
    except ValueError as exc:
        raise click.UsageError(f"invalid --secret: {exc}") from None
    start = cursor or ("start" if from_start else "latest")
    events = (iter_events_ws if use_ws else iter_events)(base_url, endpoint_id, credential, cursor=start)
    last, seen = None, 0
    click.echo(f"Listening to {endpoint_id} at {base_url} ({'WebSocket' if use_ws else 'long-poll'}); Ctrl-C stops",
               err=True)  # fmt: skip
    try:
        for event in events:
            verified: bool | None = None
            if secret is not None:
                try:
                    event.verify(secret)
                    verified = True
                except VerificationError:
                    verified = False
            if as_json:
                out = {"cursor": event.cursor, "id": event.id, "type": event.type, "payload": event.payload}
                click.echo(json.dumps({**out, "verified": verified} if secret else out, ensure_ascii=False))
            else:
                mark = {True: " (signature ok)", False: " (SIGNATURE INVALID)", None: ""}[verified]
                data = json.dumps(event.payload.get("data") if isinstance(event.payload, dict) else event.payload,
                                  ensure_ascii=False)  # fmt: skip
                when = datetime.now(UTC).strftime("%H:%M:%S")
                click.echo(f"{when}  --> {event.type} [{event.id}]{mark}  {data[:200]}")
            last, seen = event.cursor, seen + 1
            if count is not None and seen >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
        if last is not None:
            click.echo(f"last cursor: {last}  (resume with --cursor {last})", err=True)
