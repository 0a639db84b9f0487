-- now: Redis' clock in ms, for the scripts that include it (`--#include now`).
-- Scripts that write after reading TIME replicate their effects, not the script (Redis 6 needs the call).
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
