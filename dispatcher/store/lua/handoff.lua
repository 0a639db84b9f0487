-- handoff: at the end of a task, keep its kick slot (and say so) when due work remains, else free it.
-- KEYS[1] queue       zset    the default tenant's fan-out or delivery lane
-- KEYS[2] slot        string  the task's kick slot
-- KEYS[3] lanes       zset    tenant -> the earliest its lane of that queue may hold due work (other tenants)
-- ARGV[1] slot_ttl_ms
-- Returns 1 when the caller should publish a follow-up kick for its slot.
--#include now
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #due == 0 then due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1) end
if #due > 0 then
  redis.call('SET', KEYS[2], 'q', 'PX', ARGV[1])
  return 1
end
redis.call('DEL', KEYS[2])
return 0
