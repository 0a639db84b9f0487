-- record: write a batch of attempt outcomes: the attempt, the delivery's state and next due time, the
-- counters. A final state (delivered, dead) takes the delivery off the queue and releases its event's body.
-- An outcome for a delivery whose job is gone (another worker finished it after this one's lease ran out)
-- keeps its attempt in the record and changes nothing else: a finished delivery never comes back.
-- KEYS[1] lanes       zset    tenant -> the earliest its delivery lane may hold a due delivery (other tenants)
-- KEYS[2] jobs        hash    delivery id -> "<event id> <endpoint id> <attempts> <attempts this round>[ s]"
--                             (" s": the event's only delivery, its body not counted in refs)
-- KEYS[3] bodies      hash    event id -> body, while a delivery of the event is pending
-- KEYS[4] refs        hash    event id -> pending deliveries of the event (of more than one)
-- KEYS[5] outcomes    hash    "<endpoint id>:<state>" -> count
-- KEYS[6] latency     hash    latency bucket / "sum_ms" / "count" -> count
-- KEYS[7] minute      hash    state -> count in this minute (expires after ARGV[3] s)
-- KEYS[8..] per outcome: the delivery hash, its endpoint's dead-letter set, then its tenant's delivery lane
--   (delivery id -> due ms)
-- ARGV[1] retention_s  ARGV[2] now_ms  ARGV[3] minute_ttl_s  ARGV[4] outcomes J
-- ARGV[5..] J x (delivery id, event id, endpoint id, state, attempts n, attempts this round r, attempt JSON,
--   next due ms ('' when none), dead-letter it (0/1), tenant ('' for the default)), then counters as (KEYS
--   index, field, amount)
local retention = tonumber(ARGV[1])
local i = 5
local k = 8
for _ = 1, tonumber(ARGV[4]) do
  local did, eid, ep, state, n, r = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local attempt, nxt, dead_letter, tenant = ARGV[i + 6], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9]
  local delivery_key, dead_key, lane = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local job = redis.call('HGET', KEYS[2], did)
  local live = job ~= false
  -- pcall: a delivery record overwritten by something else loses its attempt, never the batch
  if live then
    redis.pcall('HSET', delivery_key, 'state', state, 'n', n, 'r', r, 'a' .. n, attempt, 'next', nxt)
  else
    redis.pcall('HSET', delivery_key, 'a' .. n, attempt)
  end
  redis.call('EXPIRE', delivery_key, retention)
  local single = live and string.sub(job, -2) == ' s'  -- its event's only delivery: the body is not counted
  if live and state == 'retrying' then
    redis.call('ZADD', lane, nxt, did)
    if tenant ~= '' then redis.call('ZADD', KEYS[1], 'LT', nxt, tenant) end
    redis.call('HSET', KEYS[2], did, eid .. ' ' .. ep .. ' ' .. n .. ' ' .. r .. (single and ' s' or ''))
  elseif live then
    redis.call('ZREM', lane, did)
    redis.call('HDEL', KEYS[2], did)
    if single then
      redis.call('HDEL', KEYS[3], eid)
    elseif redis.call('HINCRBY', KEYS[4], eid, -1) <= 0 then
      redis.call('HDEL', KEYS[4], eid)
      redis.call('HDEL', KEYS[3], eid)
    end
    if dead_letter == '1' then redis.pcall('ZADD', dead_key, ARGV[2], did) end
  end
  i = i + 10
  k = k + 3
end
while i <= #ARGV do
  redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
redis.call('EXPIRE', KEYS[7], ARGV[3])
return 1
