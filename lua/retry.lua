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
-- KEYS[11] kready     zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[12] kring      zset: keys to serve, by virtual time
-- KEYS[13] kwait      zset: keys waiting for a token
-- KEYS[14] kstate     hash: per-key counts and state, keyed task -> member
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
--@include keyed
--@include redis_time
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
local kready = KEYS[11]
local kring = KEYS[12]
local kwait = KEYS[13]
local kstate = KEYS[14]
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
local now = redis_now_ms()
if due > 0 then
  -- key_hold_on_retry: the task keeps its key's slot while it waits, so the key's later tasks
  -- wait for it (strict order with key_concurrency=1).
  keyed_end(kready, kring, kwait, kstate, marker, id, false, redis.call('HGET', flow, 'key_hold') == '1', now)
  redis.call('ZADD', retry, due, id)
  signal_due(marker, due)
  return 2
end
if not keyed_back(kready, kring, kwait, kstate, marker, id, now) then
  redis.call('LPUSH', pending, id)
end
signal_ready(marker)
return 1
