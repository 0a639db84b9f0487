"""Constants with units, in one place: what is not a setting but still a number someone may look for.

Settings (``dispatcher.settings.Settings``) are what operators tune; these are the fixed sizes,
intervals and bounds the code is built around. Names carry their unit (``_MS``, ``_S``, ``_BYTES``).
"""

from __future__ import annotations

# -- kicks ----------------------------------------------------------------------------------------
# A kick slot is held from the kick's publication until its task ends. While the kick waits in the broker
# the slot lives SLOT_QUEUED_TTL_MS (covering a wait behind busy tasks); once its task runs, the task keeps
# it alive in SLOT_RUNNING_TTL_MS steps, refreshed every SLOT_REFRESH_S, so a task killed mid-run frees
# its slot within seconds and the scheduler kicks another.
SLOT_QUEUED_TTL_MS = 10_000
SLOT_RUNNING_TTL_MS = 3_000
SLOT_REFRESH_S = 1.0

# -- delivery loop ----------------------------------------------------------------------------------
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
# a claim looks at the default tenant's lane and at most this many other tenants' lanes, earliest first
LANES_PER_CLAIM = 32
STATS_MINUTE_TTL_S = 7200  # per-minute outcome counters (web page, `dispatcher stats`)
STATS_MINUTES_SHOWN = 10  # per-minute counters returned by the stats

# -- the event-type catalog (dispatcher.event_types) --------------------------------------------------
EVENT_TYPE_SCHEMA_MAX_BYTES = 64 * 1024  # a registered JSON Schema, encoded
EVENT_TYPE_DESCRIPTION_MAX_CHARS = 1000
BUILTIN_EVENT_TYPES = frozenset({"webhook.test", "endpoint.disabled"})  # sent by send_test and worker.health

# -- the consumer portal ------------------------------------------------------------------------------
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"  # where `dispatcher api` listens by default (portal links' base)
