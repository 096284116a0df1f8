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
-- KEYS[12] waiters    hash: id -> waiters registered for its final state
-- KEYS[13] progress   hash: id -> progress reported by its running handler
-- KEYS[14] children   hash: id -> its dependants (docs/workflows.md)
-- KEYS[15] outbox     hash: id -> its final outcome, recorded for its dependants
-- KEYS[16] outbox_at  zset: id -> when that outcome was recorded (ms)
-- KEYS[17] flow       hash: the queue's flow limits (a freed slot wakes a held worker)
-- KEYS[18] marker     zset waking blocked workers
-- KEYS[19] kready     zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[20] kring      zset: keys to serve, by virtual time
-- KEYS[21] kwait      zset: keys waiting for a token
-- KEYS[22] kstate     hash: per-key counts and state, keyed task -> member
-- ARGV[1] id
-- ARGV[2] lease token
-- ARGV[3] updated message (its last error recorded)
-- ARGV[4] now ms
-- ARGV[5] expiry of the daily counter (epoch s)
-- ARGV[6] most archived tasks kept, if the queue stores no limits
-- ARGV[7] longest an archived task is kept (ms), if the queue stores no limits
-- ARGV[8] "1" to count the task as failed
-- ARGV[9] prefix of the per-task channels announcing a final state to waiters
-- ARGV[10] its outcome for dependants: msgpack ["archived", error text]
-- Returns: 1; 2 when its outcome was recorded for dependants (deliver it)
-- Errors: NOT_ACTIVE (lease gone or stale token; nothing changed)
--@include codes
--@include lease
--@include unique
--@include counters
--@include trim_archive
--@include archive_limits
--@include final
--@include outbox
--@include flow
--@include keyed
--@include redis_time
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
local waiters = KEYS[12]
local progress = KEYS[13]
local children = KEYS[14]
local outbox = KEYS[15]
local outbox_at = KEYS[16]
local flow = KEYS[17]
local marker = KEYS[18]
local kready = KEYS[19]
local kring = KEYS[20]
local kwait = KEYS[21]
local kstate = KEYS[22]
local id = ARGV[1]
local now = tonumber(ARGV[4])

if not holds_lease(tokens, id, ARGV[2]) then
  return NOT_ACTIVE
end
end_lease(lease, tokens, id)
flow_freed(flow, marker)
keyed_end(kready, kring, kwait, kstate, marker, id, true, false, redis_now_ms())
redis.call('HSET', msg, id, ARGV[3])
redis.call('ZADD', archived, now, id)
redis.call('HDEL', lost, id)
redis.call('HDEL', cancel, id)
redis.call('HDEL', progress, id)
release_unique(unique, id)
if ARGV[8] == '1' then
  count(failed, failed_day, ARGV[5], 1)
end
local max_size, max_age_ms = archive_limits(limits, ARGV[6], ARGV[7])
trim_archive(archived, msg, result, limits, now, max_size, max_age_ms, 100)
announce_final(waiters, ARGV[9], id, 'archived')
if record_outcome(children, outbox, outbox_at, id, ARGV[10]) then
  return 2
end
return 1
