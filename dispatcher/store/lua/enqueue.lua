-- enqueue: store events and queue them for fan-out, all or nothing; an id or idempotency key seen before
-- returns the first event's id and writes nothing for it.
-- KEYS[1] fanout      zset    queue entry -> due ms (the default tenant's lane)
-- KEYS[2] slot        string  the fan-out kick slot taken when something was queued
-- KEYS[3] enqueued    string  counter of events accepted
-- KEYS[4] tenants     hash    tenant id -> tenant JSON (an event's tenant must be there, or be ARGV[4]);
--                             its max_events_per_s / max_events_per_day, when set, bound what is accepted
-- KEYS[5] lanes       zset    tenant -> the earliest its fan-out lane may hold a due entry (other tenants)
-- KEYS[6..] per event: its event hash, then its idempotency key when it has one, then its tenant's usage
--   hash ("s" -> "<unix second> <events>", "d" -> "<unix day> <events>"), then its tenant's fan-out lane
--   (KEYS[1]'s name for the default tenant)
-- ARGV[1] retention_s        ARGV[2] idempotency_ttl_s     ARGV[3] slot_ttl_ms    ARGV[4] the default tenant
-- ARGV[5..] per event, 6 each: id, type, body, only (endpoint ids or ''), has_idempotency_key (0/1), tenant;
--   its queue entry is "<id> <type>", "<id> <type> <only>" or, of another tenant than the default,
--   "<id> <type> <only or -> <tenant>"
-- Every key is read before anything is written, so an error (a key of the wrong type, a tenant that does
-- not exist: 'unknown tenant <id>', a tenant over a limit: 'quota exceeded <id> <per_s|per_day> <limit>
-- <retry after s>') writes nothing.
-- Returns {kick (0/1), the id per event..., 1 if new / 0 if seen per event...}
--#include now
local retention, idem_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids, fresh = {}, {}
local writes = {}
local pending_idem = {}  -- idempotency keys taken by an earlier event of this batch
local k = 6
local limits = {[ARGV[4]] = false}  -- tenant -> {per_s, per_day} (the default tenant: false, no limits)
local usage = {}  -- tenant -> {KEYS index of its usage hash, events this second, events this day, new events}
local second, day = math.floor(now / 1000), math.floor(now / 86400000)
for i = 5, #ARGV, 6 do  -- read everything first
  local id, has_idem, tenant = ARGV[i], ARGV[i + 4], ARGV[i + 5]
  local event_key = KEYS[k]
  local idem_key = nil
  k = k + 1
  if has_idem == '1' then idem_key = KEYS[k]; k = k + 1 end
  local usage_at = k  -- KEYS index of the tenant's usage hash
  k = k + 2  -- and its lane
  if limits[tenant] == nil then
    local raw = redis.call('HGET', KEYS[4], tenant)
    if not raw then return redis.error_reply('unknown tenant ' .. tenant) end
    local ok, t = pcall(cjson.decode, raw)
    local per_s = ok and type(t) == 'table' and tonumber(t.max_events_per_s) or nil
    local per_day = ok and type(t) == 'table' and tonumber(t.max_events_per_day) or nil
    limits[tenant] = {per_s, per_day}  -- each nil when not set; usage is counted either way
    local u = redis.call('HMGET', KEYS[usage_at], 's', 'd')
    local s_at, s_n = string.match(u[1] or '', '^(%d+) (%d+)$')
    local d_at, d_n = string.match(u[2] or '', '^(%d+) (%d+)$')
    usage[tenant] = {usage_at, tonumber(s_at) == second and tonumber(s_n) or 0,
                     tonumber(d_at) == day and tonumber(d_n) or 0, 0}
  end
  local result, dup = id, false
  if idem_key then
    local prev = redis.pcall('GET', idem_key)
    if type(prev) == 'table' and prev.err then
      return redis.error_reply('idempotency key of event ' .. id .. ' is not a string key: ' .. prev.err)
    end
    if prev then result = prev; dup = true end
    if not dup and pending_idem[idem_key] then result = pending_idem[idem_key]; dup = true end
  end
  if not dup and (redis.call('EXISTS', event_key) == 1 or writes[event_key]) then dup = true end
  if not dup then
    writes[event_key] = i
    if idem_key then pending_idem[idem_key] = id end
    if usage[tenant] then usage[tenant][4] = usage[tenant][4] + 1 end
  end
  ids[#ids + 1] = result
  fresh[#fresh + 1] = dup and 0 or 1
end
for tenant, u in pairs(usage) do  -- a tenant over a limit: nothing is written, for any tenant
  local per_s, per_day = limits[tenant][1], limits[tenant][2]
  if per_s and u[2] + u[4] > per_s then
    return redis.error_reply('quota exceeded ' .. tenant .. ' per_s ' .. per_s .. ' 1')
  end
  if per_day and u[3] + u[4] > per_day then
    return redis.error_reply('quota exceeded ' .. tenant .. ' per_day ' .. per_day .. ' '
                             .. math.ceil(((day + 1) * 86400000 - now) / 1000))
  end
end
local added = 0
k = 6
for i = 5, #ARGV, 6 do
  local event_key = KEYS[k]
  local idem_key = nil
  k = k + 1
  if ARGV[i + 4] == '1' then idem_key = KEYS[k]; k = k + 1 end
  local lane = KEYS[k + 1]  -- after the tenant's usage hash
  k = k + 2
  if writes[event_key] == i then
    local id, typ, body, only, tenant = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 5]
    redis.call('HSET', event_key, 'body', body, 'type', typ, 'ts', now)
    local entry = id .. ' ' .. typ
    if only ~= '' then
      redis.call('HSET', event_key, 'only', only)
      entry = entry .. ' ' .. only
    end
    if tenant ~= ARGV[4] then
      redis.call('HSET', event_key, 'tenant', tenant)
      if only == '' then entry = entry .. ' -' end
      entry = entry .. ' ' .. tenant
    end
    redis.call('EXPIRE', event_key, retention)
    redis.call('ZADD', lane, now, entry)
    if tenant ~= ARGV[4] then redis.call('ZADD', KEYS[5], 'LT', now, tenant) end
    if idem_key then redis.call('SET', idem_key, id, 'EX', idem_ttl) end
    added = added + 1
  end
end
for _, u in pairs(usage) do
  if u[4] > 0 then
    redis.call('HSET', KEYS[u[1]], 's', second .. ' ' .. (u[2] + u[4]), 'd', day .. ' ' .. (u[3] + u[4]))
    redis.call('EXPIRE', KEYS[u[1]], 172800)
  end
end
local kick = 0
if added > 0 then
  redis.call('INCRBY', KEYS[3], added)
  if redis.call('SET', KEYS[2], 'q', 'NX', 'PX', ARGV[3]) then kick = 1 end
end
local out = {kick}
for _, v in ipairs(ids) do out[#out + 1] = v end
for _, v in ipairs(fresh) do out[#out + 1] = v end
return out
