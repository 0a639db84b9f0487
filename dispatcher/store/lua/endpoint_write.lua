-- endpoint_write: create, change or delete one endpoint if it is still as the caller read it (compare and
-- set), and bump the endpoints' version so workers reload. A caller whose endpoint changed meanwhile reads
-- it again and re-applies its change, so no change undoes another (an auto-disable stays disabled unless
-- the change itself enables) and a deleted endpoint never comes back.
-- KEYS[1] endpoints   hash    endpoint id -> endpoint JSON
-- KEYS[2] version     string  the endpoints' version counter
-- KEYS[3] stream      stream  the endpoint's pull log (deleted with the endpoint)
-- KEYS[4] outcomes    hash    "<endpoint id>:<state>" -> deliveries (a deleted endpoint's fields are
--                             folded into "~deleted:<state>", so totals keep counting and rows do not grow)
-- KEYS[5] tenants     hash    tenant id -> tenant JSON
-- ARGV[1] endpoint id  ARGV[2] the JSON read ('' = it must not exist yet)  ARGV[3] the new JSON ('' = delete)
-- ARGV[4] a tenant that must exist for the write ('' = none to check)
-- Returns 1 written, 0 changed since it was read (read again and retry), -1 no such endpoint, -2 no such
-- tenant (a tenant is removed before its endpoints, so none is created for a tenant being deleted).
if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[5], ARGV[4]) == 0 then return -2 end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if current then return 0 end
elseif not current then
  return -1
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[3])
  for _, state in ipairs({'delivered', 'retrying', 'dead'}) do
    local n = redis.call('HGET', KEYS[4], ARGV[1] .. ':' .. state)
    if n then
      redis.call('HINCRBY', KEYS[4], '~deleted:' .. state, n)
      redis.call('HDEL', KEYS[4], ARGV[1] .. ':' .. state)
    end
  end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('INCR', KEYS[2])
return 1
