-- retry: record a failed attempt of an active task and schedule its next attempt.
--
-- KEYS[1] lease       zset: active id -> lease expiry ms
-- KEYS[2] msg         hash: id -> message
-- KEYS[3] retry       zset: id -> next attempt ms
-- KEYS[4] pending     list of ready ids
-- KEYS[5] marker      zset waking blocked workers
-- KEYS[6] failed      total counter
-- KEYS[7] failed_day  daily counter
-- ARGV[1] id
-- ARGV[2] updated message (retry count and error recorded)
-- ARGV[3] next attempt ms; 0 means ready now
-- ARGV[4] expiry of the daily counter (epoch s)
-- Returns: 1 when pending again, 2 when waiting in retry
-- Errors: NOT_ACTIVE
--@include codes
--@include marker
--@include counters
local lease = KEYS[1]
local msg = KEYS[2]
local retry = KEYS[3]
local pending = KEYS[4]
local marker = KEYS[5]
local failed = KEYS[6]
local failed_day = KEYS[7]
local id = ARGV[1]
local due = tonumber(ARGV[3])

if redis.call('ZREM', lease, id) == 0 then
  return NOT_ACTIVE
end
redis.call('HSET', msg, id, ARGV[2])
count(failed, failed_day, ARGV[4], 1)
if due > 0 then
  redis.call('ZADD', retry, due, id)
  signal_due(marker, due)
  return 2
end
redis.call('LPUSH', pending, id)
signal_ready(marker)
return 1
