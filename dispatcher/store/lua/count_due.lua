-- count_due: how many members of a queue are due now, by Redis' clock.
-- KEYS[1] queue       zset    member -> due ms
-- ARGV[1] cap (count no further)
--#include now
return #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
