-- take_slots: take free kick slots of a stage.
-- KEYS[1..] slot      string  the stage's kick slots
-- ARGV[1] slot_ttl_ms  ARGV[2] how many to take at most
-- Returns the 1-based indexes of the slots taken.
local taken = {}
local want = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if #taken >= want then break end
  if redis.call('SET', key, 'q', 'NX', 'PX', ARGV[1]) then taken[#taken + 1] = i end
end
return taken
