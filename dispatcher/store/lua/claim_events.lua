-- claim_events: lease due queue entries for fan-out (hidden until the lease ends) and read the endpoints'
-- version, so the caller matches them against endpoints at least as new as the events.
-- KEYS[1] fanout      zset    queue entry ("<id> <type>[ <only>]") -> due ms, or lease end while claimed
-- KEYS[2] slot        string  the caller's kick slot
-- KEYS[3] version     string  the endpoints' version counter
-- ARGV[1] limit  ARGV[2] lease_ms  ARGV[3] slot_ttl_ms
-- ARGV[4] slot mode: 'none' (no slot held), 'keep' (refresh it), 'release_if_empty' (free it when nothing is due)
-- Returns {now_ms, version ('' if none), entries...}
--#include now
local version = redis.call('GET', KEYS[3]) or ''
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local mode = ARGV[4]
if #entries == 0 then
  if mode == 'release_if_empty' then redis.call('DEL', KEYS[2])
  elseif mode == 'keep' then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  return {now, version}
end
local until_ms = now + tonumber(ARGV[2])
local out = {now, version}
for _, entry in ipairs(entries) do
  redis.call('ZADD', KEYS[1], until_ms, entry)
  out[#out + 1] = entry
end
if mode ~= 'none' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return out
