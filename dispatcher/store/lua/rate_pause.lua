-- rate_pause: a throttled answer (the platform says "too fast"): no new send slot before now + pause.
-- KEYS[1] limit       hash    the endpoint's rate limit: 'tat' (next free send time, ms), 'd:<delivery id>'
-- ARGV[1] pause_ms  ARGV[2] hold_ttl_ms
--#include now
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then redis.call('DEL', KEYS[1]) end  -- overwritten: start afresh
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0') or 0
local until_ms = now + tonumber(ARGV[1])
if until_ms > tat then
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', until_ms))
  redis.call('PEXPIRE', KEYS[1], math.ceil(until_ms - now) + tonumber(ARGV[2]))
end
return 1
