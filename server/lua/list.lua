-- KEYS: names
-- ARGV: secret key prefix (same hash tag as KEYS[1], so every key read stays in one slot)
-- The secret keys are read by name, not declared, so Redis Cluster cannot tell that some of them have already
-- moved during a slot migration. A listed name without its hash means exactly that (the scripts keep the
-- index and the secrets in step): answer TRYAGAIN, as Redis itself would, rather than a partial list.
local result = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local fields = redis.call('HGETALL', ARGV[1] .. name)
  if #fields == 0 then
    return redis.error_reply('TRYAGAIN a listed secret is not on this node (slot migrating)')
  end
  table.insert(result, fields)
end
return result
