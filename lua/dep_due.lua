-- dep_due: outcomes recorded for dependants longer ago than a grace period and still not
-- delivered (their worker died between settling and delivering): the sweep delivers them.
--
-- KEYS[1] outbox_at  zset: id -> when its outcome was recorded (ms)
-- ARGV[1] grace ms
-- ARGV[2] most ids returned
-- Returns: ids
--@include redis_time
local outbox_at = KEYS[1]

return redis.call('ZRANGE', outbox_at, '-inf', redis_now_ms() - tonumber(ARGV[1]), 'BYSCORE',
  'LIMIT', 0, tonumber(ARGV[2]))
