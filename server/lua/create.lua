-- KEYS: secret, names, env index, files index, usage
-- ARGV: name, id, description, env_name, file_path, created_at, updated_at, value, key_id, value_len,
--       max_secrets, max_total_bytes, max_env_bytes
local name, env_name, file_path = ARGV[1], ARGV[4], ARGV[5]
local value_len = tonumber(ARGV[10])

if redis.call('EXISTS', KEYS[1]) == 1 then
  -- Our own id: this request ran already and its reply was lost; the client's retry must not say "exists".
  if redis.call('HGET', KEYS[1], 'id') == ARGV[2] then return {'ok'} end
  return {'exists', 'name'}
end
if env_name ~= '' and redis.call('HEXISTS', KEYS[3], env_name) == 1 then return {'exists', 'env_name'} end
if file_path ~= '' and redis.call('HEXISTS', KEYS[4], file_path) == 1 then return {'exists', 'file_path'} end

if redis.call('ZCARD', KEYS[2]) + 1 > tonumber(ARGV[11]) then return {'limit', 'count'} end
local bytes = tonumber(redis.call('HGET', KEYS[5], 'bytes') or '0')
if bytes + value_len > tonumber(ARGV[12]) then return {'limit', 'bytes'} end
if env_name ~= '' then
  local env_bytes = tonumber(redis.call('HGET', KEYS[5], 'env_bytes') or '0')
  if env_bytes + value_len > tonumber(ARGV[13]) then return {'limit', 'env_bytes'} end
end

redis.call('HSET', KEYS[1], 'id', ARGV[2], 'name', name, 'description', ARGV[3], 'env_name', env_name,
  'file_path', file_path, 'created_at', ARGV[6], 'updated_at', ARGV[7], 'value', ARGV[8], 'key_id', ARGV[9],
  'value_len', ARGV[10])
redis.call('ZADD', KEYS[2], 0, name)
if env_name ~= '' then
  redis.call('HSET', KEYS[3], env_name, name)
  redis.call('HINCRBY', KEYS[5], 'env_bytes', value_len)
end
if file_path ~= '' then redis.call('HSET', KEYS[4], file_path, name) end
redis.call('HINCRBY', KEYS[5], 'bytes', value_len)
return {'ok'}
