-- rate_reserve: reserve send times ("slots") for chunks of deliveries to one rate-limited endpoint, in
-- order, with GCRA (the next free time 'tat' advances by interval_ms per request; up to 'burst' requests may
-- go at once), so the endpoint never gets more than burst + elapsed / interval requests, whatever the
-- number of workers. A chunk whose deliveries hold a slot ('d:<id>', written when one was handed back to
-- the queue to wait for it) keeps that slot; any other chunk gets the next free one.
-- KEYS[1] limit       hash    the endpoint's rate limit: 'tat' (next free send time, ms), 'd:<delivery id>'
-- ARGV[1] interval_ms  ARGV[2] burst  ARGV[3] hold_ttl_ms  ARGV[4..] per chunk: n, then n delivery ids
-- Returns {now_ms, then the slot (ms) of each chunk}.
--#include now
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then redis.call('DEL', KEYS[1]) end  -- overwritten: start afresh
local interval = tonumber(ARGV[1])
local tau = (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0') or 0
local out = {now}
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local held = nil
  for j = 1, n do
    local field = 'd:' .. ARGV[i + j]
    local v = redis.call('HGET', KEYS[1], field)
    if v then
      redis.call('HDEL', KEYS[1], field)
      held = math.max(held or 0, tonumber(v) or 0)
    end
  end
  if held then
    out[#out + 1] = held
  else
    out[#out + 1] = math.ceil(math.max(now, tat - tau))
    tat = math.max(tat, now) + interval
  end
  i = i + n + 1
end
redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', tat))
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(tat - now, 0)) + tonumber(ARGV[3]))
return out
