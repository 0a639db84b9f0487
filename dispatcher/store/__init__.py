"""Everything that touches Redis: key names (``keys``), the Lua scripts and their typed wrappers
(``scripts``), endpoints, delivery records, statistics and pull logs. No other room spells a key."""
