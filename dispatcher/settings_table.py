"""The README's settings table, generated from ``Settings`` (a test holds the README to it)."""

from __future__ import annotations

from dispatcher.settings import Settings


def _shown(value: object) -> str:
    if value is None or value == ():
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def settings_table() -> str:
    """The README's settings table, made from ``Settings`` (a test holds the README to it)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = "`webhook-dispatcher/<version>`" if name == "user_agent" else f"`{_shown(info.default)}`"
        rows.append(f"| `{name.upper()}` | {default} | {info.description} |")
    return "\n".join(rows)
