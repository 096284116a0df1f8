-- flow_status: read a queue's flow limits and state with the counts they act on, at one instant
-- of the Redis clock that judges them (in a cluster, that of the queue's shard).
--
-- KEYS[1] flow     hash: the queue's flow limits and their state
-- KEYS[2] lease    zset: active id -> lease expiry ms
-- KEYS[3] pending  list of ready ids
-- ARGV: none
-- Returns: {{interval, burst, max_active, tat, held, rate} (false where absent), leased count,
--   pending count, Redis TIME in ms as a string}
--@include redis_time
local fields = redis.call('HMGET', KEYS[1], 'interval', 'burst', 'max_active', 'tat', 'held', 'rate')
return {fields, redis.call('ZCARD', KEYS[2]), redis.call('LLEN', KEYS[3]), tostring(redis_now_ms())}
