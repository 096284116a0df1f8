-- delete: remove a task that is not active, with its result, cancel record and uniqueness lock.
--
-- KEYS[1] msg        hash: id -> message
-- KEYS[2] pending    list of ready ids
-- KEYS[3] lease      zset: active id -> lease expiry ms
-- KEYS[4] scheduled  zset: id -> due ms
-- KEYS[5] retry      zset: id -> next attempt ms
-- KEYS[6] archived   zset: id -> archived at ms
-- KEYS[7] completed  zset: id -> record expiry ms
-- KEYS[8] result     hash: id -> result
-- KEYS[9] lost       hash: id -> times its lease expired
-- KEYS[10] unique    the task's uniqueness lock
-- KEYS[11] cancel    hash: id -> cancel request
-- KEYS[12] waiters   hash: id -> waiters registered for its final state
-- KEYS[13] progress  hash: id -> progress reported by its running handler
-- KEYS[14] children  hash: id -> its dependants (docs/workflows.md)
-- KEYS[15] outbox    hash: id -> its final outcome, recorded for its dependants
-- KEYS[16] outbox_at zset: id -> when that outcome was recorded (ms)
-- KEYS[17] kready    zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[18] kring     zset: keys to serve, by virtual time
-- KEYS[19] kwait     zset: keys waiting for a token
-- KEYS[20] kstate    hash: per-key counts and state, keyed task -> member
-- KEYS[21] marker    zset waking blocked workers (a freed key slot)
-- ARGV[1] id
-- ARGV[2] prefix of the per-task channels announcing a final state to waiters
-- ARGV[3] its outcome for dependants: msgpack ["deleted", nil] (the sweep delivers it)
-- Returns: 1
-- Errors: NOT_FOUND, TASK_ACTIVE
--@include take_task
--@include unique
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
local waiters = KEYS[12]
local progress = KEYS[13]
local children = KEYS[14]
local outbox = KEYS[15]
local outbox_at = KEYS[16]
local kready = KEYS[17]
local kring = KEYS[18]
local kwait = KEYS[19]
local kstate = KEYS[20]
local marker = KEYS[21]
local id = ARGV[1]

local state, code = take_task(msg, pending, lease, scheduled, retry, archived, completed, id,
  {['pending'] = true, ['scheduled'] = true, ['retry'] = true, ['archived'] = true,
   ['completed'] = true},
  kready, kring, kwait, kstate, marker, false)
if not state then
  return code
end
redis.call('HDEL', msg, id)
redis.call('HDEL', result, id)
redis.call('HDEL', lost, id)
redis.call('HDEL', cancel, id)
redis.call('HDEL', progress, id)
release_unique(unique, id)
announce_final(waiters, ARGV[2], id, 'deleted')
record_outcome(children, outbox, outbox_at, id, ARGV[3])
return 1
