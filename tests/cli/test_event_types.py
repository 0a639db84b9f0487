"""``dispatcher event-types`` against a real Redis: register from files, list, show, remove, and clean
one-line errors (exit 2 for bad input) that write nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import redis
from click.testing import Result

from dispatcher import Dispatcher, Settings

SCHEMA = {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}


def clean_error(result: Result, exit_code: int, fragment: str) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and fragment in line, line
    return line


def write(path: Path, value: object) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def test_register_list_show_and_remove(
    cli_env: dict[str, str], settings: Settings, tmp_path: Path, ok: Callable[[Result], str], run: Callable[..., Result]
) -> None:
    schema, example = write(tmp_path / "s.json", SCHEMA), write(tmp_path / "e.json", {"order_id": "o-1"})
    out = ok(run("event-types", "register", "order.paid", "--schema", schema, "--example", example,
                 "--description", "An order was paid"))  # fmt: skip
    assert json.loads(out)["schema"] == SCHEMA
    ok(run("event-types", "register", "user.created", "--schema", "-", stdin="{}"))
    listed = ok(run("event-types", "list")).splitlines()
    assert listed == ["order.paid    An order was paid", "user.created"]
    as_json = json.loads(ok(run("event-types", "list", "--json")))
    assert [t["name"] for t in as_json] == ["order.paid", "user.created"] and as_json[0]["example"] == {
        "order_id": "o-1"
    }
    assert json.loads(ok(run("event-types", "show", "order.paid")))["description"] == "An order was paid"

    clean_error(run("enqueue", "order.paid", '{"order_id": 7}'), 2, "at /order_id, keyword 'type'")
    dsp = Dispatcher(settings)
    try:
        assert dsp.event_types.get("order.paid").schema == SCHEMA
    finally:
        dsp.close()

    assert json.loads(ok(run("event-types", "remove", "order.paid"))) == {"removed": "order.paid"}
    clean_error(run("event-types", "remove", "order.paid"), 1, "no event type 'order.paid'")
    clean_error(run("event-types", "show", "order.paid"), 1, "no event type 'order.paid'")
    assert ok(run("enqueue", "order.paid", '{"order_id": 7}')).startswith("msg_")


def test_bad_input_is_a_clean_usage_error_and_writes_nothing(
    cli_env: dict[str, str], prefix: str, raw_redis: redis.Redis, tmp_path: Path, run: Callable[..., Result]
) -> None:
    schema = write(tmp_path / "s.json", SCHEMA)
    (tmp_path / "broken.json").write_text("{nope")
    clean_error(run("event-types", "register", "order.paid", "--schema", str(tmp_path / "missing.json")), 2,
                "cannot read the schema file")  # fmt: skip
    clean_error(run("event-types", "register", "order.paid", "--schema", str(tmp_path / "broken.json")), 2,
                "is not valid JSON")  # fmt: skip
    clean_error(run("event-types", "register", "order.paid", "--schema", "-", stdin='{"type": 3}'), 2,
                "not valid JSON Schema at /type")  # fmt: skip
    bad_example = write(tmp_path / "e.json", {"order_id": 1})
    clean_error(run("event-types", "register", "order.paid", "--schema", schema, "--example", bad_example), 2,
                "example does not match the schema")  # fmt: skip
    clean_error(run("event-types", "register", "order paid", "--schema", schema), 2, "malformed event type")
    clean_error(run("event-types", "register", "order.paid", "--schema", "-", "--example", "-", stdin="{}"), 2,
                "only one of")  # fmt: skip
    assert list(raw_redis.scan_iter(match=f"{prefix}*")) == []
