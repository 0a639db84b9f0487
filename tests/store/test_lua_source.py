"""The Lua scripts' text: each file's header names every ``KEYS[n]`` the script uses, and every key a
``redis.call`` / ``redis.pcall`` touches comes from ``KEYS`` (directly, or a local taken from it), never a name
the script builds (``prefix .. 'idem:' .. id``) - what Redis Cluster requires and what keeps ``store.keys`` the
one place keys are spelled. The checker is tested on scripts written the old way, so it can fail."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from dispatcher.store.scripts import LUA_DIR, NAMES

# commands whose arguments name no key at all
KEYLESS = {"TIME", "PING", "ECHO", "INFO", "DBSIZE", "RANDOMKEY", "LASTSAVE", "MULTI", "EXEC"}
# commands whose every argument is a key
ALL_KEYS = {"DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "WATCH"}

_CALL = re.compile(r"\bredis\.p?call\s*\(")
_KEYS_REF = re.compile(r"\bKEYS\s*\[\s*([^\]]+?)\s*\]")
_LITERAL_KEYS = re.compile(r"^\d+$")
_HEADER_KEY = re.compile(r"^--\s*KEYS\[(\d+)(\.\.)?\]\s+(\S+)")
_NAME = r"[A-Za-z_]\w*"


@dataclass(frozen=True)
class Problem:
    line: int
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


def _scan(line: str) -> tuple[str, str]:
    """One line of Lua: (the line without its comment, the same with string contents blanked)."""
    masked, quote, i = [], "", 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":  # an escape: it and the character after it
                masked += [" "] * len(line[i : i + 2])
                i += 2
                continue
            masked.append(c if c == quote else " ")
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
            masked.append(c)
        elif line.startswith("--", i):
            break
        else:
            masked.append(c)
        i += 1
    code = line[: len(masked)]
    return code, "".join(masked)[: len(code)]


def _mask_strings(text: str) -> str:
    """Code (comments already removed) with every string literal's content blanked, so commas and brackets
    inside strings don't count."""
    return "\n".join(_scan(line)[1] for line in text.split("\n"))


def _code(text: str) -> str:
    """The text with comments removed (each line kept, so line numbers hold)."""
    return "\n".join(_scan(line)[0] for line in text.split("\n"))


def _split_args(code: str, start: int) -> tuple[list[str], int]:
    """The top-level, comma-separated arguments of the call whose ``(`` is just before ``start``."""
    masked = _mask_strings(code)
    depth, args, current = 0, [], start
    for i in range(start, len(code)):
        c = masked[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                args.append(code[current:i].strip())
                return [a for a in args if a], i
            depth -= 1
        elif c == "," and depth == 0:
            args.append(code[current:i].strip())
            current = i + 1
    raise AssertionError("unbalanced parentheses")


def _is_keys_index(expr: str) -> bool:
    """``KEYS[<anything>]`` and nothing else (``KEYS[k]``, ``KEYS[k + 1]``, ``KEYS[tonumber(ARGV[i])]``)."""
    expr = expr.strip()
    m = re.match(r"KEYS\s*\[", expr)
    if m is None:
        return False
    depth = 0
    for i in range(m.end() - 1, len(expr)):
        depth += {"[": 1, "]": -1}.get(expr[i], 0)
        if depth == 0:
            return i == len(expr) - 1
    return False


def _key_variables(code: str) -> set[str]:
    """Names that only ever hold a key from KEYS: locals assigned from ``KEYS[...]``, loop variables over
    ``ipairs(KEYS)``, and loop keys over a table indexed only by such names."""
    candidates: set[str] = set()
    others: set[str] = set()
    for m in re.finditer(rf"(?:\blocal\s+)?({_NAME}(?:\s*,\s*{_NAME})*)\s*=(?!=)\s*([^\n]+)", code):
        names = [n.strip() for n in m.group(1).split(",")]
        statement = re.split(r";|\s(?:end|then|do|else)\b", m.group(2))[0]  # the value ends with its statement
        values = _split_top_level(statement)
        for i, name in enumerate(names):
            value = values[i].strip() if i < len(values) else ""
            if value == "nil":  # declared before it is given a key
                continue
            (candidates if _is_keys_index(value) else others).add(name)
    for m in re.finditer(rf"\bfor\s+{_NAME}\s*,\s*({_NAME})\s+in\s+ipairs\s*\(\s*KEYS\s*\)", code):
        candidates.add(m.group(1))
    keys = candidates - others
    # tables indexed only by key variables: their keys, iterated with pairs(), are keys too
    for m in re.finditer(rf"\bfor\s+({_NAME})\s*,\s*{_NAME}\s+in\s+pairs\s*\(\s*({_NAME})\s*\)", code):
        loop_var, table = m.group(1), m.group(2)
        indexes = re.findall(rf"\b{table}\s*\[\s*([^\]]+?)\s*\]\s*=(?!=)", code)
        if indexes and all(i in keys for i in indexes) and loop_var not in others:
            keys.add(loop_var)
        else:  # whatever else the name holds elsewhere, here it holds what the table was indexed by
            keys.discard(loop_var)
    return keys


def _split_top_level(expr: str) -> list[str]:
    masked = _mask_strings(expr)
    depth, parts, current = 0, [], 0
    for i, c in enumerate(masked):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(expr[current:i])
            current = i + 1
    parts.append(expr[current:])
    return [p.strip() for p in parts]


def _is_key(arg: str, key_vars: set[str]) -> bool:
    return _is_keys_index(arg) or arg in key_vars


def key_problems(text: str) -> list[Problem]:
    """Every ``redis.call`` / ``redis.pcall`` whose key argument is not a key from KEYS."""
    code = _code(text)
    key_vars = _key_variables(code)
    problems = []
    for m in _CALL.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        args, _ = _split_args(code, m.end())
        command = re.fullmatch(r"""['"](\w+)['"]""", args[0]) if args else None
        if command is None:
            problems.append(Problem(line, f"command is not a literal: {args[:1]}"))
            continue
        name = command.group(1).upper()
        if name in KEYLESS:
            continue
        checked = args[1:] if name in ALL_KEYS else args[1:2]
        if not checked:
            problems.append(Problem(line, f"{name} without a key"))
        for arg in checked:
            if not _is_key(arg, key_vars):
                problems.append(Problem(line, f"{name} on {arg!r}: not a key from KEYS"))
    return problems


def header_problems(text: str) -> list[Problem]:
    """KEYS the code uses that the leading comment does not name."""
    header: dict[int, str] = {}
    ranged: list[int] = []
    for line in text.splitlines():
        if not line.startswith("--") or line.startswith("--#"):
            break
        m = _HEADER_KEY.match(line)
        if m:
            (ranged.append(int(m.group(1))) if m.group(2) else header.setdefault(int(m.group(1)), m.group(3)))
    code = _code(text)
    problems = []
    fixed = sorted(header)
    if fixed != list(range(1, len(fixed) + 1)):
        problems.append(Problem(1, f"the header's KEYS are not numbered 1..n: {fixed}"))
    if ranged and min(ranged) != len(fixed) + 1:
        problems.append(Problem(1, f"KEYS[{min(ranged)}..] does not follow KEYS[{len(fixed)}]"))
    for m in _KEYS_REF.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        index = m.group(1)
        if _LITERAL_KEYS.match(index):
            if int(index) not in header:
                problems.append(Problem(line, f"KEYS[{index}] is not named in the header"))
        elif not ranged:
            problems.append(Problem(line, f"KEYS[{index}] (computed) without a KEYS[n..] line in the header"))
    if re.search(r"\b(?:i?pairs\s*\(\s*KEYS\s*\)|#KEYS\b)", code) and not ranged:
        problems.append(Problem(1, "iterates over KEYS without a KEYS[n..] line in the header"))
    return problems


SCRIPTS = sorted(LUA_DIR.glob("*.lua"))


def test_every_script_file_is_a_registered_script_or_an_include() -> None:
    names = {p.stem for p in SCRIPTS}
    included = {m for p in SCRIPTS for m in re.findall(r"^--#include (\w+)$", p.read_text(), re.M)}
    assert set(NAMES) <= names
    assert names - set(NAMES) == included - set(NAMES), "a .lua file that is neither a script nor included"
    assert len(NAMES) >= 14


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_the_header_names_every_key_the_script_uses(path: Path) -> None:
    text = path.read_text()
    assert text.startswith(f"-- {path.stem}:"), "the header starts with the script's name and what it does"
    problems = header_problems(text)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_key_the_script_touches_comes_from_keys(path: Path) -> None:
    problems = key_problems(path.read_text())
    assert not problems, "\n".join(map(str, problems))


def test_scripts_really_touch_keys_the_checker_sees() -> None:
    """The checker is not vacuous: it finds the calls of every script (each touches at least one key)."""
    for path in SCRIPTS:
        code = _code(path.read_text())
        calls = _CALL.findall(code)
        if path.stem == "now":
            assert calls, "now.lua reads TIME"
            continue
        assert calls, path.stem
        assert "KEYS" in code, path.stem


# -- the checkers refuse the old style ----------------------------------------------------------------------
OLD_STYLE = [
    "local prefix = ARGV[1]\nlocal idem = ARGV[2]\nreturn redis.call('GET', prefix .. 'idem:' .. idem)",
    "return redis.call('GET', ARGV[1] .. 'idem:' .. ARGV[2])",
    "local key = ARGV[1] .. ':evt'\nredis.call('HSET', key, 'body', ARGV[2])",
    "local key = KEYS[1]\nkey = key .. ':x'\nredis.call('DEL', key)",  # reassigned: no longer a key from KEYS
    "redis.call('DEL', KEYS[1], 'whd:' .. ARGV[1])",  # every argument of DEL is a key
    "redis.pcall('ZADD', string.format('%sdue', ARGV[1]), 0, ARGV[2])",
    "local cmd = 'GET'\nredis.call(cmd, KEYS[1])",  # the command must be readable to find its key
    # a loop over a table indexed by a built name, even if the loop variable's name once held a key
    "local k = KEYS[1]\nlocal seen = {}\nseen['x' .. ARGV[1]] = true\n"
    "for k, _ in pairs(seen) do redis.call('DEL', k) end",
]


@pytest.mark.parametrize("script", OLD_STYLE)
def test_the_key_checker_refuses_keys_built_in_the_script(script: str) -> None:
    assert key_problems(script), script


def test_the_key_checker_accepts_keys_from_keys_in_every_form() -> None:
    script = """-- a comment with redis.call('GET', 'x' .. y) in it does not count
local event_key = KEYS[4]
local delivery_key, listing_key = KEYS[5], KEYS[6]
local seen = {}
redis.call('GET', KEYS[1])
redis.call('HINCRBY', KEYS[tonumber(ARGV[1])], 'f', 1)
redis.call('HSET', event_key, 'body', ARGV[2] .. ' x')
redis.pcall('ZADD', listing_key, 0, 'm')
seen[delivery_key] = true
for k, _ in pairs(seen) do redis.call('EXPIRE', k, 10) end
for _, slot in ipairs(KEYS) do redis.call('SET', slot, '1', 'NX') end
local t = redis.call('TIME')
"""
    assert key_problems(script) == []


def test_the_header_checker_refuses_unnamed_keys() -> None:
    named = "-- x: y\n-- KEYS[1] queue       zset   the queue\n-- ARGV[1] cap\n"
    assert header_problems(named + "return redis.call('ZCARD', KEYS[1])") == []
    assert header_problems(named + "return redis.call('ZCARD', KEYS[2])")  # KEYS[2] is not in the header
    assert header_problems(named + "local k = 2\nreturn redis.call('ZCARD', KEYS[k])")  # computed, no KEYS[n..]
    ranged = named + "-- KEYS[2..] per item: its hash\n"
    assert header_problems(ranged + "local k = 2\nreturn redis.call('HGETALL', KEYS[k])") == []
    assert header_problems("-- x: y\n-- KEYS[2] gap\nreturn redis.call('GET', KEYS[2])")  # KEYS[1] missing
    assert header_problems("-- x: y\nfor _, k in ipairs(KEYS) do redis.call('DEL', k) end")
