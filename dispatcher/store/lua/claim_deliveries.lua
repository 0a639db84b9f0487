-- claim_deliveries: lease due deliveries and load what sending them needs, in one round trip.
-- KEYS[1] due         zset    delivery id -> due ms, or lease end while claimed
-- KEYS[2] slot        string  the caller's kick slot
-- KEYS[3] version     string  the endpoints' version counter
-- KEYS[4] jobs        hash    delivery id -> "<event id> <endpoint id> <attempts> <attempts this round>"
-- KEYS[5] bodies      hash    event id -> the exact body to POST (while a delivery of it is pending)
-- ARGV[1] limit  ARGV[2] lease_ms  ARGV[3] slot_ttl_ms  ARGV[4] slot mode ('none' | 'keep' | 'release_if_empty')
-- Returns {now_ms, version, then per delivery: id, job, body ('' when gone)}. A queued id without a job
-- (a record from nowhere) is dropped from the queue and returned with an empty job, for the caller to report.
--#include now
local version = redis.call('GET', KEYS[3]) or ''
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local mode = ARGV[4]
if #ids == 0 then
  if mode == 'release_if_empty' then redis.call('DEL', KEYS[2])
  elseif mode == 'keep' then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  return {now, version}
end
local until_ms = now + tonumber(ARGV[2])
local jobs = redis.call('HMGET', KEYS[4], unpack(ids))
local event_ids = {}
for i, job in ipairs(jobs) do
  event_ids[i] = job and string.match(job, '^(%S+)') or ''
end
local bodies = redis.call('HMGET', KEYS[5], unpack(event_ids))
local out = {now, version}
for i, id in ipairs(ids) do
  if jobs[i] then
    redis.call('ZADD', KEYS[1], until_ms, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
  out[#out + 1] = id
  out[#out + 1] = jobs[i] or ''
  out[#out + 1] = bodies[i] or ''
end
if mode ~= 'none' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return out
