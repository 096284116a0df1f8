-- debounce: enqueue a task that waits `window` before it runs, and while it waits let newer
-- enqueues under the same debounce key replace its message (the newest wins) instead of adding
-- tasks. Once it is due (forwarded to pending), the next enqueue under the key starts a new one.
--
-- KEYS[1] msg        hash: id -> message
-- KEYS[2] scheduled  zset: id -> due ms
-- KEYS[3] marker     zset waking blocked workers
-- KEYS[4] archived   zset: id -> archived at ms
-- KEYS[5] result     hash: id -> result
-- KEYS[6] debounce   string: id of the task waiting under this debounce key
-- KEYS[7] held       hash: id -> message of a task waiting for its parents (its id is taken)
-- ARGV[1] id for a new task
-- ARGV[2] encoded message
-- ARGV[3] due ms of a new task (the end of the window)
-- ARGV[4] ms the debounce key is kept (past the due time)
-- Returns: {1, id, due ms} a new task waits; {2, id, due ms} the waiting task `id` (due then)
--   now has this message
-- Errors: CONFLICT (ARGV[1] is used by a live, held or retained task)
--@include codes
--@include marker
--@include id_status
local msg = KEYS[1]
local scheduled = KEYS[2]
local marker = KEYS[3]
local archived = KEYS[4]
local result = KEYS[5]
local debounce = KEYS[6]
local held = KEYS[7]
local id = ARGV[1]
local due = tonumber(ARGV[3])

local waiting = redis.call('GET', debounce)
local waiting_due = waiting and redis.call('ZSCORE', scheduled, waiting)
if waiting_due then
  redis.call('HSET', msg, waiting, ARGV[2])
  return {2, waiting, tonumber(waiting_due)}
end
if redis.call('HEXISTS', held, id) == 1 or not claim_id(msg, archived, result, id, ARGV[2]) then
  return CONFLICT
end
redis.call('ZADD', scheduled, due, id)
redis.call('SET', debounce, id, 'PX', tonumber(ARGV[4]))
signal_due(marker, due)
return {1, id, due}
