-- archive: an operator moves a pending, scheduled or retry task to the archive. Releases its
-- uniqueness lock and clears a recorded cancel. Trims the archive by the queue's own limits
-- in the same call, and says how many archived tasks that trim deleted, so an operator
-- action never deletes a task without reporting it.
--
-- KEYS[1] msg         hash: id -> message
-- KEYS[2] pending     list of ready ids
-- KEYS[3] lease       zset: active id -> lease expiry ms
-- KEYS[4] scheduled   zset: id -> due ms
-- KEYS[5] retry       zset: id -> next attempt ms
-- KEYS[6] archived    zset: id -> archived at ms
-- KEYS[7] completed   zset: id -> record expiry ms
-- KEYS[8] result      hash: id -> result
-- KEYS[9] lost        hash: id -> times its lease expired
-- KEYS[10] unique     the task's uniqueness lock
-- KEYS[11] cancel     hash: id -> cancel request
-- KEYS[12] limits     hash: the queue's archive limits (max_size, max_age_ms) and `trimmed`
-- KEYS[13] waiters    hash: id -> waiters registered for its final state
-- KEYS[14] children   hash: id -> its dependants (docs/workflows.md)
-- KEYS[15] outbox     hash: id -> its final outcome, recorded for its dependants
-- KEYS[16] outbox_at  zset: id -> when that outcome was recorded (ms)
-- KEYS[17] progress   hash: id -> progress reported by a run whose lease was lost (cleared)
-- KEYS[18] kready     zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[19] kring      zset: keys to serve, by virtual time
-- KEYS[20] kwait      zset: keys waiting for a token
-- KEYS[21] kstate     hash: per-key counts and state, keyed task -> member
-- KEYS[22] marker     zset waking blocked workers (a freed key slot)
-- ARGV[1] id
-- ARGV[2] now ms
-- ARGV[3] most archived tasks kept, if the queue stores no limits
-- ARGV[4] longest an archived task is kept (ms), if the queue stores no limits
-- ARGV[5] prefix of the per-task channels announcing a final state to waiters
-- ARGV[6] its outcome for dependants: msgpack ["archived", error text] (the sweep delivers it)
-- Returns: {1, archived tasks deleted by the trim}
-- Errors: NOT_FOUND, TASK_ACTIVE, WRONG_STATE (archived or completed)
--@include take_task
--@include unique
--@include trim_archive
--@include archive_limits
--@include final
--@include outbox
local msg = KEYS[1]
local pending = KEYS[2]
local lease = KEYS[3]
local scheduled = KEYS[4]
local retry = KEYS[5]
local archived = KEYS[6]
local completed = KEYS[7]
local result = KEYS[8]
local lost = KEYS[9]
local unique = KEYS[10]
local cancel = KEYS[11]
local limits = KEYS[12]
local waiters = KEYS[13]
local children = KEYS[14]
local outbox = KEYS[15]
local outbox_at = KEYS[16]
local progress = KEYS[17]
local kready = KEYS[18]
local kring = KEYS[19]
local kwait = KEYS[20]
local kstate = KEYS[21]
local marker = KEYS[22]
local id = ARGV[1]
local now = tonumber(ARGV[2])

local state, code = take_task(msg, pending, lease, scheduled, retry, archived, completed, id,
  {['pending'] = true, ['scheduled'] = true, ['retry'] = true},
  kready, kring, kwait, kstate, marker, false)
if not state then
  return code
end
redis.call('ZADD', archived, now, id)
redis.call('HDEL', lost, id)
redis.call('HDEL', cancel, id)
redis.call('HDEL', progress, id)
release_unique(unique, id)
announce_final(waiters, ARGV[5], id, 'archived')
record_outcome(children, outbox, outbox_at, id, ARGV[6])
local max_size, max_age_ms = archive_limits(limits, ARGV[3], ARGV[4])
return {1, trim_archive(archived, msg, result, limits, now, max_size, max_age_ms, 100)}
