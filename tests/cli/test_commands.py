"""The ``dispatcher`` command line against a real Redis, and ``dispatcher dev`` as a real process tree."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from click.testing import Result

from dispatcher import Settings
from dispatcher.cli.embedded import free_port

if TYPE_CHECKING:
    from tests.conftest import Received, Receiver, SchedulerProcess

COMMANDS = [
    "api",
    "tenant",
    "portal-link",
    "stats",
    "subscribe",
    "unsubscribe",
    "endpoints",
    "enable",
    "disable",
    "enqueue",
    "deliveries",
    "endpoint-deliveries",
    "replay",
    "worker",
    "scheduler",
    "dev",
    "subscribe-poll",
    "listen",
    "bench",
    "flower",
    "event-types",
]


def assert_clean_error(result: Result, exit_code: int, *fragments: str) -> str:
    """A non-zero exit with one ``Error: ...`` line on stderr and no traceback anywhere."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def keys_under(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}*", count=1000))


# -- help ------------------------------------------------------------------------------------------
def test_help_lists_every_command(ok: Callable[[Result], str], run: Callable[..., Result]) -> None:
    out = ok(run("--help"))
    listed = re.findall(r"^  ([a-z][a-z-]*)\s", out.split("Commands:")[1], re.MULTILINE)
    assert sorted(listed) == sorted(COMMANDS)


def test_python_dash_m_dispatcher_works(repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dispatcher", "--help"], capture_output=True, text=True, timeout=30, cwd=repo_root
    )
    assert proc.returncode == 0, proc.stderr
    assert "endpoint-deliveries" in proc.stdout


# -- endpoints -------------------------------------------------------------------------------------
def test_subscribe_prints_secret_once_and_listings_mask_it(
    cli_env: dict[str, str], receiver: Receiver, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    result = run(
        "subscribe", receiver.url, "-t", "user.*", "-t", "order.paid",
        "--max-batch", "10", "--retry-schedule", "5,300", "--description", "billing",
    )  # fmt: skip
    endpoint = json.loads(ok(result))
    secret = endpoint["secret"]
    assert secret.startswith("whsec_") and len(secret) > 20
    assert endpoint["event_types"] == ["user.*", "order.paid"]
    assert endpoint["max_batch"] == 10 and endpoint["retry_schedule"] == [5.0, 300.0]
    assert secret not in result.stderr

    table = ok(run("endpoints"))
    assert endpoint["id"] in table and "billing" in table
    assert secret not in table
    assert secret[:9] + "…" in table

    listed = json.loads(ok(run("endpoints", "--json")))
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert listed[0]["secret"] == secret[:9] + "…"

    for command in ("disable", "enable"):
        out = ok(run(command, endpoint["id"]))
        assert secret not in out
        assert json.loads(out)["enabled"] is (command == "enable")

    assert json.loads(ok(run("unsubscribe", endpoint["id"]))) == {"unsubscribed": endpoint["id"]}
    assert json.loads(ok(run("endpoints", "--json"))) == []


def test_subscribe_with_invalid_input_is_a_clean_usage_error(
    cli_env: dict[str, str], ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    assert_clean_error(run("subscribe", "ftp://example.com/hook"), 2, "http")
    assert_clean_error(run("subscribe", "http://127.0.0.1:9/hook", "--retry-schedule", "5,soon"), 2, "retry schedule")
    assert json.loads(ok(run("endpoints", "--json"))) == []


def test_a_refused_private_target_names_the_setting(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    monkeypatch.setenv("DISPATCHER_ALLOW_PRIVATE_TARGETS", "false")
    for url in ("http://localhost:9011/ok", "http://10.0.0.1/hooks"):
        assert_clean_error(run("subscribe", url), 2, "refusing", "DISPATCHER_ALLOW_PRIVATE_TARGETS=true")
    assert json.loads(ok(run("endpoints", "--json"))) == []


def test_an_unresolvable_host_is_saved_with_a_warning(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    monkeypatch.setenv("DISPATCHER_ALLOW_PRIVATE_TARGETS", "false")
    result = run("subscribe", "https://hooks.example.invalid/x")
    endpoint = json.loads(ok(result))
    assert endpoint["url"] == "https://hooks.example.invalid/x"
    assert len(endpoint["warnings"]) == 1 and "does not resolve now" in endpoint["warnings"][0]
    assert "Warning: host 'hooks.example.invalid' does not resolve now" in result.stderr
    assert [e["id"] for e in json.loads(ok(run("endpoints", "--json")))] == [endpoint["id"]]


def test_a_syntactically_bad_url_says_invalid_url(
    cli_env: dict[str, str], ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    line = assert_clean_error(run("subscribe", "http://exa mple.com/x"), 2, "invalid URL", "contains a space")
    assert "resolve" not in line
    assert_clean_error(run("subscribe", "example.com/hooks"), 2, "invalid URL", "http:// or https://")
    assert json.loads(ok(run("endpoints", "--json"))) == []


def test_unsubscribe_unknown_endpoint_is_a_clean_error(cli_env: dict[str, str], run: Callable[..., Result]) -> None:
    assert_clean_error(run("unsubscribe", "ep_doesnotexist"), 1, "ep_doesnotexist")
    assert_clean_error(run("enable", "ep_doesnotexist"), 1, "no endpoint")


def test_tenants_from_the_command_line(
    cli_env: dict[str, str], receiver: Receiver, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    assert json.loads(ok(run("tenant", "create", "acme", "--name", "Acme")))["name"] == "Acme"
    assert [t["id"] for t in json.loads(ok(run("tenant", "list")))] == ["default", "acme"]
    endpoint = json.loads(ok(run("subscribe", receiver.url, "--tenant", "acme")))
    assert endpoint["tenant"] == "acme"
    assert [e["id"] for e in json.loads(ok(run("endpoints", "--json", "--tenant", "acme")))] == [endpoint["id"]]
    assert ok(run("enqueue", "order.paid", "{}", "--tenant", "acme")).strip().startswith("msg_")
    assert ok(run("tenant", "token", "acme")).strip().startswith("wht_")
    assert json.loads(ok(run("tenant", "limits", "acme", "--max-per-day", "1")))["max_events_per_day"] == 1
    assert_clean_error(run("enqueue", "order.paid", "{}", "--tenant", "acme"), 1, "1 events per day")
    assert json.loads(ok(run("tenant", "limits", "acme")))["max_events_per_day"] is None
    assert_clean_error(run("enqueue", "order.paid", "{}", "--tenant", "nope"), 1, "no tenant 'nope'")
    assert_clean_error(run("subscribe", receiver.url, "--tenant", "nope"), 1, "no tenant 'nope'")
    link = ok(run("portal-link", "acme", "--base-url", "https://hooks.example.com/")).strip()
    assert re.fullmatch(r"https://hooks\.example\.com/portal/whpl_[A-Za-z0-9_-]{43}", link), link
    assert ok(run("portal-link", "acme")).strip().startswith("http://127.0.0.1:8000/portal/whpl_")
    assert_clean_error(run("portal-link", "acme", "--base-url", "hooks.example.com"), 2, "must be http(s)://host")
    assert json.loads(ok(run("tenant", "delete", "acme"))) == {"deleted": "acme", "purged": 0}
    assert json.loads(ok(run("endpoints", "--json"))) == []
    assert_clean_error(run("tenant", "delete", "acme"), 1, "no tenant 'acme'")
    assert_clean_error(run("portal-link", "acme"), 1, "no tenant 'acme'")


# -- events ----------------------------------------------------------------------------------------
def test_enqueue_bad_json_exits_2_and_writes_nothing(
    cli_env: dict[str, str], prefix: str, raw_redis: redis.Redis, run: Callable[..., Result]
) -> None:
    for bad in ("{bad", "", "NaN", '{"a": 1'):
        line = assert_clean_error(run("enqueue", "user.created", bad), 2, "not valid JSON")
        assert len(line) < 200
    assert keys_under(raw_redis, prefix) == []


def test_enqueue_prints_the_event_id(
    cli_env: dict[str, str], settings: Settings, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    from dispatcher import Dispatcher

    event_id = ok(run("enqueue", "user.created", '{"id": 1, "name": "Ada"}')).strip()
    assert re.fullmatch(r"msg_\w+", event_id), event_id
    dsp = Dispatcher(settings)
    try:
        stored = dsp.event(event_id)
    finally:
        dsp.close()
    assert stored["type"] == "user.created" and stored["data"] == {"id": 1, "name": "Ada"}

    # --id and --idempotency-key reach the dispatcher; stdin works with '-'
    assert ok(run("enqueue", "user.created", "-", "--id", "evt-42", stdin='{"x": 2}')).strip() == "evt-42"
    first = ok(run("enqueue", "user.deleted", "{}", "--idempotency-key", "k1")).strip()
    assert ok(run("enqueue", "user.deleted", "{}", "--idempotency-key", "k1")).strip() == first

    # no worker ran: the event exists but has no deliveries yet
    assert json.loads(ok(run("deliveries", event_id, "--json"))) == []


def test_enqueue_invalid_event_type_is_a_clean_usage_error(cli_env: dict[str, str], run: Callable[..., Result]) -> None:
    assert_clean_error(run("enqueue", "", "{}"), 2)


def test_lookups_of_unknown_records_are_clean_errors(
    cli_env: dict[str, str], ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    assert_clean_error(run("replay", "dlv_doesnotexist"), 1, "dlv_doesnotexist")
    assert_clean_error(run("deliveries", "msg_doesnotexist"), 1, "msg_doesnotexist")
    assert json.loads(ok(run("replay", "--endpoint", "ep_nothing"))) == {"replayed": 0}


def test_replay_needs_exactly_one_target(cli_env: dict[str, str], run: Callable[..., Result]) -> None:
    assert run("replay").exit_code == 2
    assert run("replay", "dlv_x", "--endpoint", "ep_x").exit_code == 2
    assert run("replay", "dlv_x", "--since", "0").exit_code == 2


def test_lookup_errors_say_why_and_what_to_run(cli_env: dict[str, str], run: Callable[..., Result]) -> None:
    assert_clean_error(run("deliveries", "msg_nope"), 1, "no event 'msg_nope'", "DISPATCHER_RETENTION_S")
    assert_clean_error(run("replay", "dlv_doesnotexist"), 1, "no delivery 'dlv_doesnotexist'", "expired")
    assert_clean_error(run("deliveries", "dlv_abc"), 1, "that is a delivery id", "msg_")
    assert_clean_error(run("deliveries", "ep_abc"), 1, "that is an endpoint id", "endpoint-deliveries")
    assert "DELIVERY_ID of a dead delivery, or --endpoint ID" in run("replay").stderr
    assert "not both" in run("replay", "dlv_x", "--endpoint", "ep_x").stderr


def test_bad_secret_and_oversized_event_say_what_to_do(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    assert_clean_error(
        run("subscribe", "http://127.0.0.1:9/h", "--secret", "whsec_c2hvcnQ="), 2, "5 bytes", "leave it out"
    )
    assert_clean_error(run("subscribe", "http://127.0.0.1:9/h", "--secret", "whsec_***"), 2, "base64", "leave it out")
    monkeypatch.setenv("DISPATCHER_MAX_PAYLOAD_BYTES", "100")
    assert_clean_error(run("enqueue", "a.b", json.dumps({"x": "y" * 200})), 2, "DISPATCHER_MAX_PAYLOAD_BYTES")


# -- configuration and Redis errors ----------------------------------------------------------------
def test_bad_configuration_is_a_clean_error(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    monkeypatch.setenv("DISPATCHER_RETRY_JITTER", "5")
    assert_clean_error(run("endpoints"), 1, "DISPATCHER_RETRY_JITTER")


def test_unreachable_redis_is_a_clean_error_without_the_password(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    monkeypatch.setenv("DISPATCHER_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    for args in (["endpoints"], ["enqueue", "user.created", "{}"]):
        result = run(*args)
        assert_clean_error(result, 1, "unreachable", "check that Redis runs and that DISPATCHER_REDIS_URL points at it")
        assert "hunter2" not in result.output


# -- deliveries and replay with a real worker ------------------------------------------------------
def test_deliveries_and_replay_with_a_worker(
    cli_env: dict[str, str],
    settings: Settings,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Any],
    ok: Callable[[Result], str],
    run: Callable[..., Result],
    wait_until: Callable[..., Any],
) -> None:
    failing = threading.Event()
    failing.set()

    def reply(n: int, request: Received) -> tuple[int, dict[str, str], bytes]:
        return (503, {}, b"down") if failing.is_set() else (200, {}, b"ok")

    target = receiver_factory(reply=reply)
    worker_factory(settings)
    endpoint = json.loads(ok(run("subscribe", target.url, "-t", "user.*")))
    event_id = ok(run("enqueue", "user.created", '{"id": 7}')).strip()

    def dead() -> list[dict[str, Any]]:
        return list(json.loads(ok(run("endpoint-deliveries", endpoint["id"], "--state", "dead", "--json"))))

    [delivery] = wait_until(dead, 20, 0.1, "the delivery to be dead-lettered")
    attempts = len(settings.retry_schedule) + 1
    assert delivery["event_id"] == event_id and len(delivery["attempts"]) == attempts
    assert {a["status"] for a in delivery["attempts"]} == {503}
    table = ok(run("deliveries", event_id))
    assert delivery["id"] in table and "dead" in table and "503" in table

    failing.clear()
    assert json.loads(ok(run("replay", delivery["id"]))) == {"replayed": 1}

    def delivered() -> bool:
        [d] = json.loads(ok(run("deliveries", event_id, "--json")))
        return bool(d["state"] == "delivered")

    wait_until(delivered, 20, 0.1, "the replayed delivery to succeed")
    assert target.count() == attempts + 1
    assert dead() == []


# -- worker and scheduler processes ----------------------------------------------------------------
def test_worker_runs_celery_with_events_and_cpu_concurrency(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    import dispatcher.cli.processes as cli_module

    seen: list[list[str]] = []

    def fake_exec(argv: list[str]) -> None:
        seen.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(cli_module, "exec_process", fake_exec)
    ok(run("worker", "--without-gossip", "-c", "3"))
    [argv] = seen
    assert argv[:6] == [sys.executable, "-m", "celery", "-A", "workers.app", "worker"]
    assert "-E" in argv and argv[argv.index("-l") + 1] == "info"
    assert argv[argv.index("-c") + 1] == str(cli_module.cpu_count())
    assert argv[-3:] == ["--without-gossip", "-c", "3"]  # the caller's options come last, so they win


def test_scheduler_stops_cleanly_on_sigterm(
    settings: Settings, scheduler_factory: Callable[..., SchedulerProcess], wait_until: Callable[..., Any]
) -> None:
    scheduler = scheduler_factory(settings)
    proc = scheduler.process
    wait_until(lambda: "scheduler running" in scheduler.log() or proc.poll() is not None, 20, 0.05)
    assert proc.poll() is None, scheduler.log()
    assert scheduler.stop(signal.SIGTERM, timeout_s=10) == 0
    assert "scheduler stopped" in scheduler.log()


def test_stats_prints_figures(
    cli_env: dict[str, str], receiver: Receiver, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    ok(run("subscribe", receiver.url, "-t", "*"))
    ok(run("enqueue", "user.created", "{}"))
    figures = json.loads(ok(run("stats", "--json")))
    assert figures["enqueued_total"] == 1
    assert "due" in ok(run("stats")).lower()


def test_api_without_keys_is_a_clean_error(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    monkeypatch.delenv("DISPATCHER_API_KEYS", raising=False)
    result = run("api", "--port", "1")
    assert result.exit_code == 1 and "api" in result.output.lower()


def test_flower_refuses_a_public_interface_without_authentication(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    import dispatcher.cli.flower as flower_module

    seen: list[tuple[list[str], str | None]] = []

    def fake_exec(argv: list[str]) -> None:
        seen.append((argv, os.environ.get("FLOWER_UNAUTHENTICATED_API")))
        raise SystemExit(0)

    monkeypatch.setattr(flower_module, "_exec", fake_exec)
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.delenv("FLOWER_AUTH", raising=False)
    monkeypatch.delenv("FLOWER_UNAUTHENTICATED_API", raising=False)
    refused = run("flower", "--address", "0.0.0.0")
    assert refused.exit_code == 2 and "FLOWER_BASIC_AUTH" in refused.output and not seen
    # loopback without authentication: Flower's API is opened for local scripts
    ok(run("flower"))
    argv, unauthenticated_api = seen.pop()
    assert argv[:6] == [sys.executable, "-m", "celery", "-A", "workers.app", "flower"]
    assert "--address=127.0.0.1" in argv and "--max_tasks=10000" in argv and unauthenticated_api == "true"
    # a public interface with authentication: started, the API behind the same authentication
    monkeypatch.delenv("FLOWER_UNAUTHENTICATED_API", raising=False)
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:s3cret")
    ok(run("flower", "--address", "0.0.0.0", "--port", "5599"))
    argv, unauthenticated_api = seen.pop()
    assert "--address=0.0.0.0" in argv and "--port=5599" in argv and unauthenticated_api is None
