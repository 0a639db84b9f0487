-- replay: queue a dead delivery again, for a fresh round of the retry schedule (its attempts are kept).
-- KEYS[1] delivery    hash    the delivery's record
-- KEYS[2] due         zset    the delivery's tenant's lane: delivery id -> due ms
-- KEYS[3] dead        zset    the endpoint's dead letters
-- KEYS[4] jobs        hash    delivery id -> "<event id> <endpoint id> <attempts> <attempts this round>"
-- KEYS[5] bodies      hash    event id -> body, while a delivery of the event is pending
-- KEYS[6] refs        hash    event id -> pending deliveries of the event
-- KEYS[7] event       hash    the delivery's event (its body, when it has not expired)
-- KEYS[8] lanes       zset    tenant -> the earliest its delivery lane may hold a due delivery (other tenants)
-- ARGV[1] delivery id  ARGV[2] event id  ARGV[3] endpoint id (as the caller read them from the record)
-- ARGV[4] the delivery's tenant ('' for the default)
-- Returns 1 if replayed, 0 if the delivery is not dead, -1 if it does not exist (or changed meanwhile).
--#include now
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return -1 end
local f = redis.call('HMGET', KEYS[1], 'state', 'evt', 'ep', 'n')
if not f[1] or f[2] ~= ARGV[2] or f[3] ~= ARGV[3] then return -1 end
if f[1] ~= 'dead' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending', 'r', 0, 'next', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[8], 'LT', now, ARGV[4]) end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. (tonumber(f[4]) or 0) .. ' 0')
redis.pcall('ZREM', KEYS[3], ARGV[1])
if redis.call('HINCRBY', KEYS[6], ARGV[2], 1) == 1 then
  local body = redis.call('HGET', KEYS[7], 'body')
  if body then redis.call('HSET', KEYS[5], ARGV[2], body) end
end
return 1
