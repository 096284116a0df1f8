-- retry: record a failed attempt of an active task and schedule its next attempt. Only the
-- holder of the task's current lease token may; a recorded cancel stays with the task, so the
-- next dequeue archives it as cancelled instead of running it.
--
-- KEYS[1] lease       zset: active id -> lease expiry ms
-- KEYS[2] msg         hash: id -> message
-- KEYS[3] retry       zset: id -> next attempt ms
-- KEYS[4] pending     list of ready ids
-- KEYS[5] marker      zset waking blocked workers
-- KEYS[6] failed      total counter
-- KEYS[7] failed_day  daily counter
-- KEYS[8] tokens      hash: active id -> fencing token
-- KEYS[9] progress    hash: id -> progress reported by its running handler (cleared)
-- KEYS[10] flow       hash: the queue's flow limits (a freed slot wakes a held worker)
-- ARGV[1] id
-- ARGV[2] lease token
-- ARGV[3] updated message (retry count and error recorded)
-- ARGV[4] next attempt ms; 0 means ready now
-- ARGV[5] expiry of the daily counter (epoch s)
-- Returns: 1 when pending again, 2 when waiting in retry
-- Errors: NOT_ACTIVE (lease gone or stale token; nothing changed)
--@include codes
--@include marker
--@include counters
--@include lease
--@include flow
local lease = KEYS[1]
local msg = KEYS[2]
local retry = KEYS[3]
local pending = KEYS[4]
local marker = KEYS[5]
local failed = KEYS[6]
local failed_day = KEYS[7]
local tokens = KEYS[8]
local progress = KEYS[9]
local flow = KEYS[10]
local id = ARGV[1]
local due = tonumber(ARGV[4])

if not holds_lease(tokens, id, ARGV[2]) then
  return NOT_ACTIVE
end
end_lease(lease, tokens, id)
redis.call('HDEL', progress, id)
flow_freed(flow, marker)
redis.call('HSET', msg, id, ARGV[3])
count(failed, failed_day, ARGV[5], 1)
if due > 0 then
  redis.call('ZADD', retry, due, id)
  signal_due(marker, due)
  return 2
end
redis.call('LPUSH', pending, id)
signal_ready(marker)
return 1
