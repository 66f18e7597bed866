-- KEYS: secret
-- ARGV: expected_id, old ciphertext, new ciphertext, key_id
-- Compare-and-set for key rotation: a secret changed or replaced since it was read is left alone.
local current = redis.call('HMGET', KEYS[1], 'id', 'value')
if current[1] ~= ARGV[1] or current[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'value', ARGV[3], 'key_id', ARGV[4])
return 1
