"""Constants with units, in one place: what is not a setting but still a number someone may look for.

Settings (``dispatcher.settings.Settings``) are what operators tune; these are the fixed sizes,
intervals and bounds the code is built around. Names carry their unit (``_MS``, ``_S``, ``_BYTES``).
"""

from __future__ import annotations

# -- kicks ----------------------------------------------------------------------------------------
SLOT_TTL_MS = 30_000  # a kick slot's lifetime, refreshed while its task works

# -- delivery loop ----------------------------------------------------------------------------------
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
STATS_MINUTE_TTL_S = 7200  # per-minute outcome counters (web page, `dispatcher stats`)
STATS_MINUTES_SHOWN = 10  # per-minute counters returned by the stats
