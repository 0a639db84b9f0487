"""The quick check of common schemas (pure logic): it never says yes where jsonschema says no, it does say
yes to the data it is there for, and it steps aside for the keywords it does not cover."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from dispatcher.fastschema import quick_check

ORDER = {
    "type": "object",
    "required": ["order_id", "amount"],
    "additionalProperties": False,
    "properties": {
        "order_id": {"type": "string", "minLength": 1, "maxLength": 64, "description": "ours"},
        "amount": {"type": "integer", "minimum": 0},
        "currency": {"enum": ["EUR", "USD"]},
        "lines": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["sku"]}},
        "note": {"type": ["string", "null"], "format": "email"},
    },
}

TYPES = ["null", "boolean", "integer", "number", "string", "array", "object"]
numbers = st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False)
counts = st.integers(0, 3)
words = st.text(alphabet="ab", max_size=2)

base_keywords = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(TYPES) | st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True),
        "minimum": numbers, "maximum": numbers, "exclusiveMinimum": numbers, "exclusiveMaximum": numbers,
        "minLength": counts, "maxLength": counts, "minItems": counts, "maxItems": counts,
        "minProperties": counts, "maxProperties": counts,
        "enum": st.lists(words | st.none(), min_size=1, max_size=3),
        "const": words | st.none(),
        "required": st.lists(st.sampled_from("abc"), max_size=3, unique=True),
        "format": st.just("email"),
        "description": st.text(max_size=3),
    },
)  # fmt: skip


def _nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    more = st.fixed_dictionaries(
        {},
        optional={
            "properties": st.dictionaries(st.sampled_from("abc"), children, max_size=3),
            "additionalProperties": children,
            "items": children,
        },
    )
    return st.tuples(base_keywords, more).map(lambda pair: {**pair[0], **pair[1]})


schemas = st.recursive(base_keywords | st.booleans(), _nested, max_leaves=6)
data = st.recursive(
    st.none() | st.booleans() | st.integers(-6, 6) | st.floats(allow_nan=True, allow_infinity=True) | words,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from("abcd"), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=1000, deadline=None)
@given(schema=schemas, value=data)
def test_a_quick_yes_is_always_a_jsonschema_yes(schema: Any, value: Any) -> None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        assume(False)
    quick = quick_check(schema)
    assert quick is not None, schema  # every generated keyword is one the quick check covers
    if quick(value):
        assert Draft202012Validator(schema).is_valid(value), (schema, value)


def test_it_says_yes_to_matching_data_and_not_to_the_rest() -> None:
    quick = quick_check(ORDER)
    assert quick is not None
    good = {"order_id": "o-1", "amount": 5, "currency": "EUR", "lines": [{"sku": "a"}], "note": None}
    assert quick(good) and quick({"order_id": "o", "amount": 3.0})  # 3.0 is an integer to JSON Schema
    for bad in (
        {"order_id": "o-1"},
        {"order_id": "", "amount": 1},
        {"order_id": "o", "amount": -1},
        {"order_id": "o", "amount": True},
        {"order_id": "o", "amount": 1, "currency": "GBP"},
        {"order_id": "o", "amount": 1, "lines": []},
        {"order_id": "o", "amount": 1, "lines": [{}]},
        {"order_id": "o", "amount": 1, "other": 1},
        {"order_id": "o", "amount": float("nan")},
        [],
        None,
    ):
        assert not quick(bad), bad
        assert not Draft202012Validator(ORDER).is_valid(bad), bad


def test_values_jsonschema_reads_its_own_way_are_left_to_it() -> None:
    quick = quick_check({"minimum": 0})
    assert quick is not None and quick(1) and quick("text") and quick(None)
    assert not quick(Decimal("1"))  # not vouched for: jsonschema decides
    assert Draft202012Validator({"minimum": 0}).is_valid(Decimal("1"))


@pytest.mark.parametrize(
    "schema",
    [
        {"pattern": "^a"},
        {"$ref": "#/$defs/x", "$defs": {"x": {}}},
        {"properties": {"a": {"oneOf": [{"type": "string"}]}}},
        {"enum": [1, 2]},
        {"const": {"a": 1}},
        {"multipleOf": 0.1},
        {"$schema": "http://json-schema.org/draft-07/schema#"},
        {"x-vendor": True},
    ],
)
def test_other_keywords_get_no_quick_check(schema: dict[str, Any]) -> None:
    assert quick_check(schema) is None
