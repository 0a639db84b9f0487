-- purge: take pending deliveries off the queue as dead, with a reason (their endpoint was deleted), and
-- release their events' bodies. Deliveries no longer pending (no job) are left as they are.
-- KEYS[1] due         zset    the endpoint's tenant's delivery lane: delivery id -> due ms
-- KEYS[2] jobs        hash    delivery id -> "<event id> <endpoint id> <attempts> <attempts this round>[ s]"
-- KEYS[3] bodies      hash    event id -> body, while a delivery of the event is pending
-- KEYS[4] refs        hash    event id -> pending deliveries of the event (of more than one; " s" jobs: one)
-- KEYS[5..] per delivery: its record
-- ARGV[1] retention_s  ARGV[2] the reason, recorded as a last attempt that was not made  ARGV[3..] ids
-- Returns how many were pending and are now dead.
--#include now
local purged = 0
for i = 3, #ARGV do
  local did = ARGV[i]
  local job = redis.call('HGET', KEYS[2], did)
  if job then
    local eid, n = string.match(job, '^(%S+) %S+ (%d+)')
    n = (tonumber(n) or 0) + 1
    redis.call('ZREM', KEYS[1], did)
    redis.call('HDEL', KEYS[2], did)
    if eid and string.sub(job, -2) == ' s' then  -- the event's only delivery: its body is not counted
      redis.call('HDEL', KEYS[3], eid)
    elseif eid and redis.call('HINCRBY', KEYS[4], eid, -1) <= 0 then
      redis.call('HDEL', KEYS[4], eid)
      redis.call('HDEL', KEYS[3], eid)
    end
    local attempt = cjson.encode({n = n, at = now / 1000, error = ARGV[2], latency_ms = 0, response = ''})
    redis.pcall('HSET', KEYS[i + 2], 'state', 'dead', 'next', '', 'n', n, 'a' .. n, attempt)
    redis.pcall('EXPIRE', KEYS[i + 2], ARGV[1])
    purged = purged + 1
  end
end
return purged
