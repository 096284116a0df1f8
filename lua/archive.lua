-- archive: move a task to the archive (dead letter). From a worker (ARGV[2] holds the updated
-- message) the task must be active; from an operator (ARGV[2] = "") it must be pending,
-- scheduled or retry. Trims the archive by age and size in the same call.
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
-- KEYS[11] failed     total counter
-- KEYS[12] failed_day daily counter
-- ARGV[1] id
-- ARGV[2] updated message, or "" to keep the stored one (operator action)
-- ARGV[3] now ms
-- ARGV[4] expiry of the daily counter (epoch s)
-- ARGV[5] most archived tasks kept
-- ARGV[6] longest an archived task is kept, ms
-- ARGV[7] "1" to count the task as failed
-- Returns: 1
-- Errors: NOT_FOUND, NOT_ACTIVE (worker), TASK_ACTIVE or WRONG_STATE (operator)
--@include codes
--@include task_state
--@include unique
--@include counters
--@include trim_archive
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
local failed = KEYS[11]
local failed_day = KEYS[12]
local id = ARGV[1]
local now = tonumber(ARGV[3])

local state = task_state(msg, lease, scheduled, retry, archived, completed, id)
if not state then
  return NOT_FOUND
end
if ARGV[2] ~= '' then
  if state ~= 'active' then
    return NOT_ACTIVE
  end
  redis.call('ZREM', lease, id)
  redis.call('HSET', msg, id, ARGV[2])
elseif state == 'active' then
  return TASK_ACTIVE
elseif state == 'pending' then
  -- From the tail (count -1): the oldest tasks, which bulk actions take first, sit there.
  redis.call('LREM', pending, -1, id)
elseif state == 'scheduled' then
  redis.call('ZREM', scheduled, id)
elseif state == 'retry' then
  redis.call('ZREM', retry, id)
else
  return WRONG_STATE
end
redis.call('ZADD', archived, now, id)
redis.call('HDEL', lost, id)
release_unique(unique, id)
if ARGV[7] == '1' then
  count(failed, failed_day, ARGV[4], 1)
end
trim_archive(archived, msg, result, now, tonumber(ARGV[5]), tonumber(ARGV[6]), 100)
return 1
