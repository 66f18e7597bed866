-- One secret's hash, as HGETALL gives it. A script (not a bare HGETALL) so that on Redis Cluster a read during a
-- slot migration goes through the same ASK-safe sender as the writes (durable.py).
return redis.call('HGETALL', KEYS[1])
