-- KEYS: names
-- ARGV: secret key prefix (same hash tag as KEYS[1], so every key read stays in one slot)
local result = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local fields = redis.call('HGETALL', ARGV[1] .. name)
  if #fields > 0 then table.insert(result, fields) end
end
return result
