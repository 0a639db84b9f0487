-- claim_events: lease due queue entries for fan-out, over the tenants' lanes (hidden until the lease ends),
-- and read the endpoints' version, so the caller matches them against endpoints at least as new as the events.
-- KEYS[1] fanout      zset    the default tenant's lane: queue entry ("<id> <type>[ <only>[ <tenant>]]") -> due
--                             ms, or lease end while claimed
-- KEYS[2] slot        string  the caller's kick slot
-- KEYS[3] version     string  the endpoints' version counter
-- KEYS[4] lanes       zset    tenant -> the earliest its lane may hold a due entry
-- KEYS[5..] lanes     zset    other tenants' lanes to claim from (like KEYS[1])
-- ARGV[1] limit  ARGV[2] lease_ms  ARGV[3] slot_ttl_ms
-- ARGV[4] slot mode: 'none' (no slot held), 'keep' (refresh it), 'release_if_empty' (free it when nothing is due)
-- ARGV[5] how many of the index's first tenants a claim looks at  ARGV[6] 1: claim only if KEYS[5..] are
--   their lanes (lanes_stale), 0: claim over the lanes passed as they are
-- ARGV[7..] the tenant of each of KEYS[5..]
-- Returns {now_ms, version ('' if none), 0 | 1 when nothing was due in the lanes passed but a lane not passed
-- may hold due work (the slot is kept: claim again with the head returned) | 2 when the lanes passed were
-- stale (nothing claimed, the slot untouched), the index's head after the claim (tenants), entries...}
--#include now
--#include lanes
local claimed, out = claim(redis.call('GET', KEYS[3]) or '', 5)
for _, lane in ipairs(claimed) do
  for _, entry in ipairs(lane[3]) do out[#out + 1] = entry end
end
return out
