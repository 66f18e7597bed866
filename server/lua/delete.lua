-- KEYS: secret, names, env index, files index, usage
-- ARGV: name
local name = ARGV[1]
local old = redis.call('HMGET', KEYS[1], 'env_name', 'file_path', 'value_len')
if redis.call('DEL', KEYS[1]) == 0 then return {'not_found'} end

local env_name, file_path, value_len = old[1] or '', old[2] or '', tonumber(old[3] or '0')
redis.call('ZREM', KEYS[2], name)
if env_name ~= '' and redis.call('HGET', KEYS[3], env_name) == name then
  redis.call('HDEL', KEYS[3], env_name)
end
if file_path ~= '' and redis.call('HGET', KEYS[4], file_path) == name then
  redis.call('HDEL', KEYS[4], file_path)
end
-- 0 - n, not -n: Lua renders -0 as "-0", which HINCRBY rejects.
redis.call('HINCRBY', KEYS[5], 'bytes', 0 - value_len)
if env_name ~= '' then redis.call('HINCRBY', KEYS[5], 'env_bytes', 0 - value_len) end
-- A user with no secrets left keeps no index or usage keys.
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[3], KEYS[4], KEYS[5]) end
return {'ok'}
