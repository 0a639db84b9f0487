-- count_due: how many members of a queue's lanes are due now, by Redis' clock.
-- KEYS[1..] lanes     zset    member -> due ms (the default tenant's lane and the others passed)
-- ARGV[1] cap (count no further)
--#include now
local cap, n = tonumber(ARGV[1]), 0
for _, lane in ipairs(KEYS) do
  if n >= cap then break end
  n = n + #redis.call('ZRANGEBYSCORE', lane, '-inf', now, 'LIMIT', 0, cap - n)
end
return n
