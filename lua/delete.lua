-- delete: remove a task that is not active, with its result and uniqueness lock.
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
-- ARGV[1] id
-- Returns: 1
-- Errors: NOT_FOUND, TASK_ACTIVE
--@include codes
--@include task_state
--@include unique
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
local id = ARGV[1]

local state = task_state(msg, lease, scheduled, retry, archived, completed, id)
if not state then
  return NOT_FOUND
end
if state == 'active' then
  return TASK_ACTIVE
end
if state == 'pending' then
  -- From the tail (count -1): the oldest tasks, which bulk actions take first, sit there.
  redis.call('LREM', pending, -1, id)
elseif state == 'scheduled' then
  redis.call('ZREM', scheduled, id)
elseif state == 'retry' then
  redis.call('ZREM', retry, id)
elseif state == 'archived' then
  redis.call('ZREM', archived, id)
else
  redis.call('ZREM', completed, id)
end
redis.call('HDEL', msg, id)
redis.call('HDEL', result, id)
redis.call('HDEL', lost, id)
release_unique(unique, id)
return 1
