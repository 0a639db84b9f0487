-- fanout_commit: record the deliveries of claimed events and take the events off the fan-out queue.
-- An event already fanned out (a worker that lost its lease) or expired is only taken off the queue, so a
-- redone fan-out creates nothing twice and appends nothing twice to a pull log.
-- KEYS[1] lanes       zset    tenant -> the earliest its delivery lane may hold a due delivery (other tenants)
-- KEYS[2] jobs        hash    delivery id -> "<event id> <endpoint id> <attempts> <attempts this round>[ s]"
--                             (" s": the event's only delivery; its body is released with it, not counted)
-- KEYS[3] bodies      hash    event id -> body, while a delivery of the event is pending
-- KEYS[4] refs        hash    event id -> pending deliveries of an event of more than one (its body goes when
--                             none is left)
-- KEYS[5..] per event: its event hash, its tenant's fan-out lane (holding its queue entry) and delivery lane
--   (delivery id -> due ms); then per delivery: the delivery hash and its endpoint's delivery listing; then
--   per pull log: the endpoint's stream
-- ARGV[1] retention_s  ARGV[2] poll_max_events  ARGV[3] poll_max_age_ms  ARGV[4] the default tenant
-- ARGV[5..] per event: queue entry, event id, tenant, deliveries D, pull logs L, then D x (endpoint id,
--   delivery id, delay ms: a delivery to an endpoint known to hang is born due later, at the pace it can take)
-- A log entry holds prev (the entry before it: a reader whose cursor is older than the first entry's prev
-- has lost entries to trimming), id, type, ts and body. Retention at append: about poll_max_events entries
-- (MAXLEN ~, whole macro nodes) and none older than poll_max_age (MINID, exact).
-- A record of the wrong type (a key overwritten by something else) is skipped, never stops the batch.
-- Returns {deliveries created, then the ids of events whose records could not be used}.
--#include now
local retention = tonumber(ARGV[1])
local max_events = ARGV[2]
local max_age_ms = tonumber(ARGV[3])
local created = 0
local listings, logs = {}, {}
local poisoned = {}
local function ok(reply)  -- a redis.pcall reply that is not an error
  return not (type(reply) == 'table' and reply.err)
end
local k = 5
local i = 5
while i <= #ARGV do
  local entry, id, tenant = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local count, streams = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  i = i + 5
  local event_key, fanout_lane, due_lane = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  k = k + 3
  local first_due = nil
  local ev = redis.pcall('HMGET', event_key, 'ts', 'deliveries', 'type', 'body')
  local fresh, ts = false, now
  if not ok(ev) then
    poisoned[#poisoned + 1] = id
  elseif ev[1] then
    fresh = not ev[2]
    ts = tonumber(ev[1]) or now
  end
  local job_tail = count == 1 and ' 0 0 s' or ' 0 0'
  local ids = {}
  for j = 0, count - 1 do
    local ep, did, delay = ARGV[i + 3 * j], ARGV[i + 3 * j + 1], tonumber(ARGV[i + 3 * j + 2]) or 0
    local delivery_key, listing_key = KEYS[k], KEYS[k + 1]
    k = k + 2
    if fresh and ok(redis.pcall('HSET', delivery_key, 'evt', id, 'ep', ep, 'state', 'pending', 'n', 0, 'r', 0,
                                'created', now, 'next', ts + delay)) then
      if tenant ~= ARGV[4] then redis.call('HSET', delivery_key, 'tenant', tenant) end
      redis.call('EXPIRE', delivery_key, retention)
      redis.pcall('ZADD', listing_key, now, did)
      redis.call('ZADD', due_lane, ts + delay, did)
      if not first_due or ts + delay < first_due then first_due = ts + delay end
      redis.call('HSET', KEYS[2], did, id .. ' ' .. ep .. job_tail)
      listings[listing_key] = true
      ids[#ids + 1] = did
    end
  end
  i = i + 3 * count
  if fresh then
    redis.call('HSET', event_key, 'deliveries', table.concat(ids, ','))
    created = created + #ids
    if #ids > 0 then
      redis.call('HSET', KEYS[3], id, ev[4] or '')
      if count > 1 then redis.call('HINCRBY', KEYS[4], id, #ids) end
      if tenant ~= ARGV[4] then redis.call('ZADD', KEYS[1], 'LT', first_due, tenant) end
    end
    for _ = 1, streams do
      local stream_key = KEYS[k]
      k = k + 1
      local prev = logs[stream_key]
      if not prev then
        local last = redis.pcall('XREVRANGE', stream_key, '+', '-', 'COUNT', 1)
        prev = ok(last) and (last[1] and last[1][1] or '0-0') or nil
      end
      if prev then
        logs[stream_key] = redis.call('XADD', stream_key, 'MAXLEN', '~', max_events, '*',
                                      'prev', prev, 'id', id, 'type', ev[3] or '', 'ts', ts, 'body', ev[4] or '')
      else
        poisoned[#poisoned + 1] = id
      end
    end
  else
    k = k + streams
  end
  redis.call('ZREM', fanout_lane, entry)
end
for listing_key, _ in pairs(listings) do
  redis.pcall('ZREMRANGEBYSCORE', listing_key, '-inf', now - retention * 1000)
end
for stream_key, _ in pairs(logs) do
  redis.call('XTRIM', stream_key, 'MINID', now - max_age_ms)
end
local out = {created}
for _, id in ipairs(poisoned) do out[#out + 1] = id end
return out
