-- lanes: the claim claim_events and claim_deliveries share (`--#include lanes`, after `now`): lease up to
-- `limit` due members over the default tenant's lane and the other tenants' lanes the caller passed: each
-- lane with anything due up to an equal share of the limit (the whole limit when it is the only one). So
-- one tenant's backlog never keeps another tenant's work waiting more than a claim, and while others have
-- work too, its claims stay at its share (a smaller batch, done sooner). Every lane passed then has its
-- entry in the lanes index put right: its earliest score, or no entry when it is empty.
-- The caller passes the lanes of the tenants the index listed first when it last looked (the head a claim
-- returns), so a claim is one round trip; a claim checks them against the index and, when they are not
-- what it lists now, claims nothing and returns the index's head to claim again with.
-- KEYS[1] lane        zset    the default tenant's lane: member -> due ms, or lease end while claimed
-- KEYS[2] slot        string  the caller's kick slot (settle_slot): ARGV[3] its TTL ms, ARGV[4] the slot mode
-- KEYS[3] version     string  (the including script's)
-- KEYS[4] index       zset    tenant -> the earliest its lane may hold a due member (a lower bound)
-- KEYS[5..] lanes     zset    the script's own keys, then from KEYS[first] the other tenants' lanes, their
--                             tenants from ARGV[first_arg]
-- index_head(count) returns the index's first `count` tenants; lanes_stale(head, first, first_arg) is true
-- when the lanes passed are not those tenants' lanes (in any order).
-- claim(version, first) is the claim both scripts make, with their shared ARGV (ARGV[1] limit, ARGV[2]
-- lease_ms, ARGV[5] how many of the index's first tenants to look at, ARGV[6] 1: check the lanes passed,
-- ARGV[7..] their tenants): it returns the lanes claimed and the reply's head {now, version, 0 | 1 | 2, the
-- index's head}, with nothing claimed and the slot untouched when the lanes passed were stale (2).
-- claim_lanes(limit, until_ms, first, first_arg) returns {{position in KEYS, tenant or '', members}...}
-- (lanes that gave nothing left out); settle_slot(claimed) leaves the caller's slot running ('r', unless the
-- mode is 'none'), or frees it ('release_if_empty') when nothing was claimed and no lane not passed may hold
-- due work, and returns 1 when such a lane may (the caller claims again with the index's new head), else 0.
local function index_head(count)
  return redis.call('ZRANGE', KEYS[4], 0, count - 1)
end
local function lanes_stale(head, first, first_arg)
  if #head ~= #KEYS - first + 1 then return true end
  local passed = {}
  for p = first, #KEYS do passed[ARGV[first_arg + p - first]] = true end
  for _, tenant in ipairs(head) do
    if not passed[tenant] then return true end
  end
  return false
end
local function claim_lanes(limit, until_ms, first, first_arg)
  local lanes, active = {{1, ''}}, {}
  for p = first, #KEYS do lanes[#lanes + 1] = {p, ARGV[first_arg + p - first]} end
  for i, lane in ipairs(lanes) do
    if redis.call('ZCOUNT', KEYS[lane[1]], '-inf', now) > 0 then active[#active + 1] = i end
  end
  local share = #active == 1 and limit or math.ceil(limit / math.max(1, #active))
  local got = {}
  for _, i in ipairs(active) do
    local members = redis.call('ZRANGEBYSCORE', KEYS[lanes[i][1]], '-inf', now, 'LIMIT', 0, share)
    for _, m in ipairs(members) do redis.call('ZADD', KEYS[lanes[i][1]], until_ms, m) end
    got[i] = members
  end
  local out = {}
  for i, lane in ipairs(lanes) do
    if i > 1 then
      local head = redis.call('ZRANGE', KEYS[lane[1]], 0, 0, 'WITHSCORES')
      if head[2] then redis.call('ZADD', KEYS[4], head[2], lane[2]) else redis.call('ZREM', KEYS[4], lane[2]) end
    end
    if got[i] then out[#out + 1] = {lane[1], lane[2], got[i]} end
  end
  return out
end
local function settle_slot(claimed)
  local elsewhere = not claimed and #redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1) > 0
  local mode = ARGV[4]
  if mode == 'release_if_empty' and not claimed and not elsewhere then redis.call('DEL', KEYS[2])
  elseif mode ~= 'none' then redis.call('SET', KEYS[2], 'r', 'PX', ARGV[3]) end
  return elsewhere and 1 or 0
end
local function claim(version, first)
  local head = index_head(tonumber(ARGV[5]))
  if ARGV[6] == '1' and lanes_stale(head, first, 7) then return {}, {now, version, 2, head} end
  local claimed = claim_lanes(tonumber(ARGV[1]), now + tonumber(ARGV[2]), first, 7)
  local flag = settle_slot(#claimed > 0)
  if #KEYS >= first then head = index_head(tonumber(ARGV[5])) end  -- the claim put the lanes' entries right
  return claimed, {now, version, flag, head}
end
