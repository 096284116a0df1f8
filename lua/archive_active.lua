-- archive_active: a worker moves the task it holds to the archive (dead letter: retries used
-- up, SkipRetry, cancelled, or a message that no longer decodes). Only the holder of the
-- task's current lease token may. Releases the uniqueness lock and clears a recorded cancel;
-- trims the archive by the queue's limits in the same call.
--
-- KEYS[1] msg         hash: id -> message
-- KEYS[2] lease       zset: active id -> lease expiry ms
-- KEYS[3] tokens      hash: active id -> fencing token
-- KEYS[4] archived    zset: id -> archived at ms
-- KEYS[5] result      hash: id -> result
-- KEYS[6] lost        hash: id -> times its lease expired
-- KEYS[7] cancel      hash: id -> cancel request
-- KEYS[8] unique      the task's uniqueness lock
-- KEYS[9] failed      total counter
-- KEYS[10] failed_day daily counter
-- KEYS[11] limits     hash: the queue's archive limits (max_size, max_age_ms) and `trimmed`
-- KEYS[12] flow       hash: the queue's flow limits (a freed slot wakes a held worker)
-- KEYS[13] marker     zset waking blocked workers
-- ARGV[1] id
-- ARGV[2] lease token
-- ARGV[3] updated message (its last error recorded)
-- ARGV[4] now ms
-- ARGV[5] expiry of the daily counter (epoch s)
-- ARGV[6] most archived tasks kept, if the queue stores no limits
-- ARGV[7] longest an archived task is kept (ms), if the queue stores no limits
-- ARGV[8] "1" to count the task as failed
-- Returns: 1
-- Errors: NOT_ACTIVE (lease gone or stale token; nothing changed)
--@include codes
--@include lease
--@include unique
--@include counters
--@include trim_archive
--@include archive_limits
--@include flow
local msg = KEYS[1]
local lease = KEYS[2]
local tokens = KEYS[3]
local archived = KEYS[4]
local result = KEYS[5]
local lost = KEYS[6]
local cancel = KEYS[7]
local unique = KEYS[8]
local failed = KEYS[9]
local failed_day = KEYS[10]
local limits = KEYS[11]
local id = ARGV[1]
local now = tonumber(ARGV[4])

if not holds_lease(tokens, id, ARGV[2]) then
  return NOT_ACTIVE
end
end_lease(lease, tokens, id)
flow_freed(KEYS[12], KEYS[13])
redis.call('HSET', msg, id, ARGV[3])
redis.call('ZADD', archived, now, id)
redis.call('HDEL', lost, id)
redis.call('HDEL', cancel, id)
release_unique(unique, id)
if ARGV[8] == '1' then
  count(failed, failed_day, ARGV[5], 1)
end
local max_size, max_age_ms = archive_limits(limits, ARGV[6], ARGV[7])
trim_archive(archived, msg, result, limits, now, max_size, max_age_ms, 100)
return 1
