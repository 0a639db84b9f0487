-- health: note whether endpoints answered; a success ends an endpoint's failing streak, a failure starts one
-- if none runs. Endpoints whose streak has lasted the window are returned (the caller disables them) and
-- their streak cleared.
-- KEYS[1] failing     hash    endpoint id -> ms when its current failing streak began
-- ARGV[1] now_ms  ARGV[2] window_ms  ARGV[3..] pairs (endpoint id, 1 = answered 2xx | 0 = failed)
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local expired = {}
for i = 3, #ARGV, 2 do
  local ep = ARGV[i]
  if ARGV[i + 1] == '1' then
    redis.call('HDEL', KEYS[1], ep)
  else
    redis.call('HSETNX', KEYS[1], ep, now)
    local since = tonumber(redis.call('HGET', KEYS[1], ep)) or now
    if now - since >= window then
      redis.call('HDEL', KEYS[1], ep)
      expired[#expired + 1] = ep
    end
  end
end
return expired
