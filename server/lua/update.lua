-- KEYS: secret, names, env index, files index, usage
-- ARGV: name, expected_id ('' = any), now_us,
--       has_description, description, has_env_name, env_name, has_file_path, file_path,
--       has_value, value, key_id, value_len, max_total_bytes, max_env_bytes
-- Returns {'ok', HGETALL of the updated secret...} or {'not_found'} / {'exists', field} / {'limit', which}.
local name = ARGV[1]
local old = redis.call('HMGET', KEYS[1], 'id', 'env_name', 'file_path', 'value_len', 'updated_at')
if not old[1] then return {'not_found'} end
if ARGV[2] ~= '' and ARGV[2] ~= old[1] then return {'not_found'} end

local old_env, old_file, old_len = old[2] or '', old[3] or '', tonumber(old[4] or '0')
local new_env, new_file, new_len = old_env, old_file, old_len
if ARGV[6] == '1' then new_env = ARGV[7] end
if ARGV[8] == '1' then new_file = ARGV[9] end
if ARGV[10] == '1' then new_len = tonumber(ARGV[13]) end

if new_env ~= '' then
  local owner = redis.call('HGET', KEYS[3], new_env)
  if owner and owner ~= name then return {'exists', 'env_name'} end
end
if new_file ~= '' then
  local owner = redis.call('HGET', KEYS[4], new_file)
  if owner and owner ~= name then return {'exists', 'file_path'} end
end

-- The replaced row is taken out before the new one is measured, so it is never counted twice.
local old_env_len, new_env_len = 0, 0
if old_env ~= '' then old_env_len = old_len end
if new_env ~= '' then new_env_len = new_len end
local bytes = tonumber(redis.call('HGET', KEYS[5], 'bytes') or '0')
if bytes - old_len + new_len > tonumber(ARGV[14]) then return {'limit', 'bytes'} end
local env_bytes = tonumber(redis.call('HGET', KEYS[5], 'env_bytes') or '0')
if new_env ~= '' and env_bytes - old_env_len + new_env_len > tonumber(ARGV[15]) then
  return {'limit', 'env_bytes'}
end

-- Written as an integer string on purpose: tostring() would round a µs timestamp to 14 digits.
local updated_at = math.max(tonumber(ARGV[3]), tonumber(old[5] or '0') + 1)
redis.call('HSET', KEYS[1], 'updated_at', string.format('%.0f', updated_at))
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'description', ARGV[5]) end
if ARGV[10] == '1' then
  redis.call('HSET', KEYS[1], 'value', ARGV[11], 'key_id', ARGV[12], 'value_len', ARGV[13])
end
if new_env ~= old_env then
  redis.call('HSET', KEYS[1], 'env_name', new_env)
  if old_env ~= '' then redis.call('HDEL', KEYS[3], old_env) end
  if new_env ~= '' then redis.call('HSET', KEYS[3], new_env, name) end
end
if new_file ~= old_file then
  redis.call('HSET', KEYS[1], 'file_path', new_file)
  if old_file ~= '' then redis.call('HDEL', KEYS[4], old_file) end
  if new_file ~= '' then redis.call('HSET', KEYS[4], new_file, name) end
end
if new_len ~= old_len then redis.call('HINCRBY', KEYS[5], 'bytes', new_len - old_len) end
if new_env_len ~= old_env_len then redis.call('HINCRBY', KEYS[5], 'env_bytes', new_env_len - old_env_len) end

local result = redis.call('HGETALL', KEYS[1])
table.insert(result, 1, 'ok')
return result
