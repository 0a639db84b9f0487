"""Lua scripts: the few steps that must be atomic in Redis. Times come from Redis' own clock."""

from __future__ import annotations

_NOW = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] fanout zset, KEYS[2] kick slot key
# ARGV: prefix, retention_s, idempotency_ttl_s, kick_ttl_ms, then per event: id, type, body, idem ('' = none),
#   only (comma-separated endpoint ids the event is restricted to; '' = every subscriber)
# Returns {kick (0/1), id or first id per event..., new (0/1) per event...}
ENQUEUE = (
    _NOW
    + """
local prefix = ARGV[1]
local retention = tonumber(ARGV[2])
local idem_ttl = tonumber(ARGV[3])
local ids = {}
local fresh = {}
local added = 0
for i = 5, #ARGV, 5 do
  local id, typ, body, idem, only = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local result = id
  local dup = false
  if idem ~= '' then
    local prev = redis.call('GET', prefix .. 'idem:' .. idem)
    if prev then result = prev; dup = true end
  end
  local key = prefix .. 'evt:' .. id
  if not dup and redis.call('EXISTS', key) == 1 then dup = true end
  if not dup then
    redis.call('HSET', key, 'body', body, 'type', typ, 'ts', now)
    if only ~= '' then redis.call('HSET', key, 'only', only) end
    redis.call('EXPIRE', key, retention)
    redis.call('ZADD', KEYS[1], now, id)
    if idem ~= '' then redis.call('SET', prefix .. 'idem:' .. idem, id, 'EX', idem_ttl) end
    added = added + 1
  end
  ids[#ids + 1] = result
  fresh[#fresh + 1] = dup and 0 or 1
end
local kick = 0
if added > 0 then
  redis.call('INCRBY', prefix .. 'stats:enqueued', added)
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then kick = 1 end
end
local out = {kick}
for _, v in ipairs(ids) do out[#out + 1] = v end
for _, v in ipairs(fresh) do out[#out + 1] = v end
return out
"""
)

# The start of both claim scripts: with KEYS[1] a due zset, KEYS[2] the caller's kick slot ('' = none) and
# ARGV prefix, limit, lease_ms, slot_ttl_ms, release_slot_if_empty, take the due ids (releasing or keeping
# the slot when there are none) and start the reply {now_ms, endpoints version, ...}.
_CLAIM_HEAD = """
local prefix = ARGV[1]
local slot = KEYS[2]
local ver = redis.call('GET', prefix .. 'endpoints:ver') or ''
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then
  if slot ~= '' then
    if ARGV[5] == '1' then redis.call('DEL', slot) else redis.call('PEXPIRE', slot, ARGV[4]) end
  end
  return {now, ver}
end
local until_ms = now + tonumber(ARGV[3])
local out = {now, ver}
"""

# Claim due events for fan-out, hiding them for the lease, and read what matching needs.
# KEYS[1] fanout zset, KEYS[2] the caller's kick slot ('' = none)
# ARGV: prefix, limit, lease_ms, slot_ttl_ms, release_slot_if_empty (0/1)
# Returns {now_ms, endpoints version, then per event: id, type ('' if expired), only}
CLAIM_EVENTS = (
    _NOW
    + _CLAIM_HEAD
    + """
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], until_ms, id)
  local f = redis.call('HMGET', prefix .. 'evt:' .. id, 'type', 'only')
  out[#out + 1] = id
  out[#out + 1] = f[1] or ''
  out[#out + 1] = f[2] or ''
end
if slot ~= '' then redis.call('SET', slot, '1', 'PX', ARGV[4]) end
return out
"""
)

# Try to take kick slots. KEYS: slot keys. ARGV[1] ttl ms, ARGV[2] how many to take at most.
# Returns the 1-based indexes of the slots taken.
TAKE_SLOTS = """
local taken = {}
local want = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if #taken >= want then break end
  if redis.call('SET', key, '1', 'NX', 'PX', ARGV[1]) then taken[#taken + 1] = i end
end
return taken
"""

# Count due members of a zset (by Redis' clock). KEYS[1] zset. ARGV[1] cap.
COUNT_DUE = (
    _NOW
    + """
return #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

# Move a dead delivery back to the queue. KEYS[1] delivery hash, KEYS[2] due zset, KEYS[3] endpoint dead zset
# ARGV[1] delivery id. Returns 1 if replayed, 0 if not dead, -1 if missing.
REPLAY = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state ~= 'dead' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending', 'r', 0, 'next', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
)

# Record the fan-out of claimed events. KEYS[1] fanout zset, KEYS[2] due zset.
# ARGV: prefix, retention_s, poll_max_events, poll_max_age_ms, then per event: id, count, streams,
#   then count x (endpoint id, delivery id), then streams x endpoint id (endpoints whose pull log gets the event).
# An event already fanned out (a worker that lost its lease) is skipped, so nothing is created or appended twice.
# A log entry holds prev (the id of the entry before it: a reader whose cursor is older than the first
# entry's prev has lost entries to trimming), id, type, ts and body. Retention at append: about poll_max_events
# entries (MAXLEN ~, whole macro nodes) and none older than poll_max_age (MINID, exact: a partly old node is cut).
# Returns the number of deliveries created.
FANOUT_COMMIT = (
    _NOW
    + """
local prefix = ARGV[1]
local retention = tonumber(ARGV[2])
local max_events = ARGV[3]
local max_age_ms = tonumber(ARGV[4])
local created = 0
local touched = {}
local logs = {}
local i = 5
while i <= #ARGV do
  local id = ARGV[i]
  local count = tonumber(ARGV[i + 1])
  local streams = tonumber(ARGV[i + 2])
  i = i + 3
  local ek = prefix .. 'evt:' .. id
  local ts = redis.call('HGET', ek, 'ts')
  if ts and redis.call('HEXISTS', ek, 'deliveries') == 0 then
    local dids = {}
    for j = 0, count - 1 do
      local ep, did = ARGV[i + 2 * j], ARGV[i + 2 * j + 1]
      local dk = prefix .. 'dlv:' .. did
      redis.call('HSET', dk, 'evt', id, 'ep', ep, 'state', 'pending', 'n', 0, 'r', 0, 'created', now, 'next', ts)
      redis.call('EXPIRE', dk, retention)
      redis.call('ZADD', prefix .. 'ep:' .. ep .. ':dlv', now, did)
      redis.call('ZADD', KEYS[2], ts, did)
      touched[ep] = true
      dids[#dids + 1] = did
    end
    redis.call('HSET', ek, 'deliveries', table.concat(dids, ','))
    created = created + count
    if streams > 0 then
      local ev = redis.call('HMGET', ek, 'type', 'body')
      for j = 0, streams - 1 do
        local sk = prefix .. 'stream:' .. ARGV[i + 2 * count + j]
        local prev = logs[sk]
        if not prev then
          local last = redis.call('XREVRANGE', sk, '+', '-', 'COUNT', 1)
          prev = last[1] and last[1][1] or '0-0'
        end
        logs[sk] = redis.call('XADD', sk, 'MAXLEN', '~', max_events, '*',
                              'prev', prev, 'id', id, 'type', ev[1], 'ts', ts, 'body', ev[2])
      end
    end
  end
  i = i + 2 * count + streams
  redis.call('ZREM', KEYS[1], id)
end
for ep, _ in pairs(touched) do
  redis.call('ZREMRANGEBYSCORE', prefix .. 'ep:' .. ep .. ':dlv', '-inf', now - retention * 1000)
end
for sk, _ in pairs(logs) do
  redis.call('XTRIM', sk, 'MINID', now - max_age_ms)
end
return created
"""
)

# Claim due deliveries and load what sending them needs, in one round trip.
# KEYS[1] due zset, KEYS[2] the caller's kick slot ('' = none)
# ARGV: prefix, limit, lease_ms, slot_ttl_ms, release_slot_if_empty (0/1)
# Returns {now_ms, endpoints version, then per delivery: id, endpoint id, event id, n, r, body ('' if the
# event expired)}. Deliveries whose record expired are dropped from the zset and not returned.
CLAIM_DELIVERIES = (
    _NOW
    + _CLAIM_HEAD
    + """
for _, did in ipairs(ids) do
  local f = redis.call('HMGET', prefix .. 'dlv:' .. did, 'ep', 'evt', 'n', 'r')
  if not f[1] then
    redis.call('ZREM', KEYS[1], did)
  else
    redis.call('ZADD', KEYS[1], until_ms, did)
    local body = redis.call('HGET', prefix .. 'evt:' .. f[2], 'body') or ''
    out[#out + 1] = did
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
    out[#out + 1] = f[4]
    out[#out + 1] = body
  end
end
if slot ~= '' then redis.call('SET', slot, '1', 'PX', ARGV[4]) end
return out
"""
)

# Record a batch of attempt outcomes. KEYS[1] due zset.
# ARGV: prefix, retention_s, now_ms, minute (unix minute of the stats bucket), minute_ttl_s, job count J,
#   then J x (delivery id, endpoint id ('' = deleted), state, n, r, attempt JSON, next due ms ('' = none)),
#   then counter increments as triples (hash key without the prefix, field, amount).
RECORD = """
local prefix = ARGV[1]
local retention = tonumber(ARGV[2])
local now = ARGV[3]
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  local did, ep, state, n, r = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local attempt, nxt = ARGV[i + 5], ARGV[i + 6]
  local dk = prefix .. 'dlv:' .. did
  redis.call('HSET', dk, 'state', state, 'n', n, 'r', r, 'a' .. n, attempt, 'next', nxt)
  redis.call('EXPIRE', dk, retention)
  if state == 'retrying' then
    redis.call('ZADD', KEYS[1], nxt, did)
  else
    redis.call('ZREM', KEYS[1], did)
    if state == 'dead' and ep ~= '' then redis.call('ZADD', prefix .. 'ep:' .. ep .. ':dead', now, did) end
  end
  i = i + 7
end
while i <= #ARGV do
  redis.call('HINCRBY', prefix .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
redis.call('EXPIRE', prefix .. 'stats:min:' .. ARGV[4], ARGV[5])
return 1
"""

# At the end of a task: keep the kick slot (and say so) if due work remains, else free it.
# KEYS[1] zset, KEYS[2] slot. ARGV[1] slot ttl ms. Returns 1 when the caller should publish a follow-up.
HANDOFF = (
    _NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #due > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return 1
end
redis.call('DEL', KEYS[2])
return 0
"""
)

# Read a pull log after a cursor, refusing a cursor whose next entries were trimmed away.
# KEYS[1] the endpoint's stream. ARGV: mode ('after' | 'latest'), after id ('0-0' = from the oldest entry kept),
#   limit (entries), max_bytes (stop once the bodies read add up to this; at least one entry is returned).
# Returns {'ok', after id, entries...} (an entry is {id, {field, value, ...}}; 'latest' returns no entries and
# the id of the newest entry as 'after'), or {'expired', resume id (the prev of the first entry kept), first id}.
READ_STREAM = """
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local key = KEYS[1]
if ARGV[1] == 'latest' then
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  return {'ok', last[1] and last[1][1] or '0-0'}
end
local after = ARGV[2]
local start = '-'
if after ~= '0-0' then
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  if first[1] then
    local f = first[1][2]
    for k = 1, #f, 2 do
      if f[k] == 'prev' then
        if less(after, f[k + 1]) then return {'expired', f[k + 1], first[1][1]} end
        break
      end
    end
  end
  start = '(' .. after
end
local limit = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local out = {'ok', after}
local bytes = 0
while #out - 2 < limit and bytes < max_bytes do
  local chunk = redis.call('XRANGE', key, start, '+', 'COUNT', math.min(64, limit - (#out - 2)))
  if #chunk == 0 then break end
  for _, e in ipairs(chunk) do
    local f = e[2]
    for k = 1, #f, 2 do
      if f[k] == 'body' then bytes = bytes + #f[k + 1] break end
    end
    out[#out + 1] = e
    start = '(' .. e[1]
    if bytes >= max_bytes then break end
  end
  if #chunk < 64 then break end
end
return out
"""

# Rate limits (any endpoint with rate_limit_per_s): reserve send times for chunks of deliveries to one
# endpoint, in order, with GCRA (a generic cell rate algorithm: the next free time 'tat' advances by
# interval_ms per request; up to 'burst' requests may go at once). Nothing is sent before its slot, so
# the endpoint never gets more than burst + elapsed / interval requests, whatever the number of workers.
# KEYS[1] the endpoint's rl hash. ARGV: interval_ms, burst, hold_ttl_ms, then per chunk: n, then n delivery ids.
# A chunk whose deliveries hold a slot ('d:<id>', written when one was handed back to the due set to wait
# for it) keeps that slot; any other chunk gets the next free one.
# Returns {now_ms, then the slot (ms) of each chunk}.
RATE_RESERVE = (
    _NOW
    + """
local interval = tonumber(ARGV[1])
local tau = (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local out = {now}
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local held = nil
  for j = 1, n do
    local f = 'd:' .. ARGV[i + j]
    local v = redis.call('HGET', KEYS[1], f)
    if v then
      redis.call('HDEL', KEYS[1], f)
      held = math.max(held or 0, tonumber(v))
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
"""
)

# A throttled answer (the platform says "too fast"): no new slot before now + ARGV[1] ms.
# KEYS[1] the endpoint's rl hash. ARGV: pause_ms, hold_ttl_ms.
RATE_PAUSE = (
    _NOW
    + """
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local until_ms = now + tonumber(ARGV[1])
if until_ms > tat then
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', until_ms))
  redis.call('PEXPIRE', KEYS[1], math.ceil(until_ms - now) + tonumber(ARGV[2]))
end
return 1
"""
)

# Endpoint health. ARGV: prefix, now_ms, window_ms, then pairs (endpoint id, 1 = answered 2xx | 0 = failed).
# A success ends the endpoint's failing streak; a failure starts one if none runs. Returns the endpoints
# whose streak has lasted the window (the caller disables them), clearing their streak.
HEALTH = """
local key = ARGV[1] .. 'failing'
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local expired = {}
for i = 4, #ARGV, 2 do
  local ep = ARGV[i]
  if ARGV[i + 1] == '1' then
    redis.call('HDEL', key, ep)
  else
    redis.call('HSETNX', key, ep, now)
    local since = tonumber(redis.call('HGET', key, ep))
    if now - since >= window then
      redis.call('HDEL', key, ep)
      expired[#expired + 1] = ep
    end
  end
end
return expired
"""
