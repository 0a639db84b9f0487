-- read_stream: read a pull log after a cursor, refusing a cursor whose next entries were trimmed away.
-- KEYS[1] stream      stream  the endpoint's pull log: entries prev, id, type, ts, body
-- ARGV[1] mode ('after' | 'latest')  ARGV[2] after id ('0-0' = from the oldest entry kept)  ARGV[3] limit
-- ARGV[4] max_bytes (stop once the bodies read add up to this; at least one entry is returned)
-- Returns {'ok', after id, entries...} (an entry is {id, {field, value, ...}}; 'latest' returns no entries and
-- the id of the newest entry as 'after'), or {'expired', resume id (the prev of the first entry kept), first id}.
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local key = KEYS[1]
if ARGV[1] == 'latest' then
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  return {'ok', last[1] and last[1][1] or '0-0'}
end
local after = ARGV[2]
local start = '-'
if after ~= '0-0' then
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  if first[1] then
    local f = first[1][2]
    for j = 1, #f, 2 do
      if f[j] == 'prev' then
        if less(after, f[j + 1]) then return {'expired', f[j + 1], first[1][1]} end
        break
      end
    end
  end
  start = '(' .. after
end
local limit = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local out = {'ok', after}
local bytes = 0
while #out - 2 < limit and bytes < max_bytes do
  local chunk = redis.call('XRANGE', key, start, '+', 'COUNT', math.min(64, limit - (#out - 2)))
  if #chunk == 0 then break end
  for _, e in ipairs(chunk) do
    local f = e[2]
    for j = 1, #f, 2 do
      if f[j] == 'body' then bytes = bytes + #f[j + 1] break end
    end
    out[#out + 1] = e
    start = '(' .. e[1]
    if bytes >= max_bytes then break end
  end
  if #chunk < 64 then break end
end
return out
