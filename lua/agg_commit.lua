-- agg_commit: replace a group's head entries by the one task its aggregator made of them, in one
-- step: the entries are removed only if they are still the head (compared one by one), so of
-- two aggregators racing for a group (or one re-run after a crash) exactly one commits. The
-- group's remaining entries start a new grace period from now, capped by the max delay.
--
-- KEYS[1] group     list: the group's entries, msgpack [id, message], oldest first
-- KEYS[2] groups    zset: group -> when it is due to be aggregated (ms)
-- KEYS[3] first     hash: group -> when its oldest entry was added (ms)
-- KEYS[4] conf      hash: the limits the queue's aggregators stored
-- KEYS[5] msg       hash: id -> message
-- KEYS[6] pending   list of ready ids
-- KEYS[7] marker    zset waking blocked workers
-- KEYS[8] archived  zset: id -> archived at ms
-- KEYS[9] result    hash: id -> result
-- KEYS[10] held     hash: id -> message of a task waiting for its parents (its id is taken)
-- ARGV[1] group name
-- ARGV[2] now ms
-- ARGV[3] grace ms, used when the queue stores none
-- ARGV[4] the aggregated task's id ("" for none: the entries are dropped)
-- ARGV[5] the aggregated task's message
-- ARGV[6..] the entries taken, oldest first
-- Returns: 1 committed; 0 the entries are no longer the head (another aggregator committed)
-- Errors: CONFLICT (the aggregated task's id is taken by a live, held or kept task: nothing
--   changed, the entries stay)
--@include codes
--@include marker
--@include id_status
local group = KEYS[1]
local groups = KEYS[2]
local first = KEYS[3]
local conf = KEYS[4]
local msg = KEYS[5]
local pending = KEYS[6]
local marker = KEYS[7]
local archived = KEYS[8]
local result = KEYS[9]
local held = KEYS[10]
local name = ARGV[1]
local now = tonumber(ARGV[2])
local count = #ARGV - 5

local head = redis.call('LRANGE', group, 0, count - 1)
if #head ~= count then
  return 0
end
for i = 1, count do
  if head[i] ~= ARGV[5 + i] then
    return 0
  end
end
local task_id = ARGV[4]
if task_id ~= '' and (redis.call('HEXISTS', held, task_id) == 1
    or (id_status(msg, archived, task_id) == 'taken' and not is_resend(msg, task_id, ARGV[5]))) then
  return CONFLICT
end
redis.call('LTRIM', group, count, -1)
if task_id ~= '' and claim_id(msg, archived, result, task_id, ARGV[5]) then
  redis.call('LPUSH', pending, task_id)
  signal_ready(marker)
end
if redis.call('LLEN', group) == 0 then
  redis.call('ZREM', groups, name)
  redis.call('HDEL', first, name)
else
  local stored = redis.call('HMGET', conf, 'grace_ms', 'max_size', 'max_delay_ms')
  local due = now + (tonumber(stored[1]) or tonumber(ARGV[3]))
  local max_size = tonumber(stored[2]) or 0
  -- The entries left were enqueued before now: their max delay runs from now at the latest.
  local max_delay = tonumber(stored[3]) or 0
  if max_delay > 0 and now + max_delay < due then
    due = now + max_delay
  end
  if max_size > 0 and redis.call('LLEN', group) >= max_size then
    due = now
  end
  redis.call('HSET', first, name, now)
  redis.call('ZADD', groups, due, name)
  signal_due(marker, due)
end
return 1
