-- claim_deliveries: lease due deliveries over the tenants' lanes and load what sending them needs, in one
-- round trip.
-- KEYS[1] due         zset    the default tenant's lane: delivery id -> due ms, or lease end while claimed
-- KEYS[2] slot        string  the caller's kick slot
-- KEYS[3] version     string  the endpoints' version counter
-- KEYS[4] lanes       zset    tenant -> the earliest its lane may hold a due delivery
-- KEYS[5] jobs        hash    delivery id -> "<event id> <endpoint id> <attempts> <attempts this round>"
-- KEYS[6] bodies      hash    event id -> the exact body to POST (while a delivery of it is pending)
-- KEYS[7..] lanes     zset    other tenants' lanes to claim from (like KEYS[1])
-- ARGV[1] limit  ARGV[2] lease_ms  ARGV[3] slot_ttl_ms  ARGV[4] slot mode ('none' | 'keep' | 'release_if_empty')
-- ARGV[5] how many of the index's first tenants a claim looks at  ARGV[6] 1: claim only if KEYS[7..] are
--   their lanes, 0: claim over the lanes passed as they are (as claim_events)
-- ARGV[7..] the tenant of each of KEYS[7..]
-- Returns {now_ms, version, 0 | 1 | 2 and the index's head (as claim_events), then per lane that gave
-- deliveries: its tenant ('' for the default), how many, and per delivery: id, job, body ('' when gone)}. A
-- queued id without a job (a record from nowhere) is dropped from its lane and returned with an empty job, for
-- the caller to report.
--#include now
--#include lanes
local claimed, out = claim(redis.call('GET', KEYS[3]) or '', 7)
for _, lane in ipairs(claimed) do
  local ids = lane[3]
  local jobs = redis.call('HMGET', KEYS[5], unpack(ids))
  local event_ids = {}
  for i, job in ipairs(jobs) do
    event_ids[i] = job and string.match(job, '^(%S+)') or ''
  end
  local bodies = redis.call('HMGET', KEYS[6], unpack(event_ids))
  out[#out + 1] = lane[2]
  out[#out + 1] = #ids
  for i, id in ipairs(ids) do
    if not jobs[i] then redis.call('ZREM', KEYS[lane[1]], id) end
    out[#out + 1] = id
    out[#out + 1] = jobs[i] or ''
    out[#out + 1] = bodies[i] or ''
  end
end
return out
