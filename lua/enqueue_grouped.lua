-- enqueue_grouped: add a task to its aggregation group (enqueue with group=). The group's
-- tasks wait together until a grace period passes with no new task, a maximum delay since the
-- first, or a maximum size; its due time goes through the marker like a scheduled task's, so
-- a worker's aggregator wakes for it without polling (docs/workflows.md, "Task aggregation").
--
-- KEYS[1] group    list: the group's entries, msgpack [id, message], oldest first
-- KEYS[2] groups   zset: group -> when it is due to be aggregated (ms)
-- KEYS[3] first    hash: group -> when its oldest entry was added (ms)
-- KEYS[4] conf     hash: the limits the queue's aggregators stored (grace_ms, max_delay_ms,
--                  max_size)
-- KEYS[5] marker   zset waking blocked workers
-- ARGV[1] group name
-- ARGV[2] entry: msgpack [id, message]
-- ARGV[3] now ms
-- ARGV[4] grace ms, ARGV[5] max delay ms (0: none), ARGV[6] max size (0: none): used when the
--         queue stores no limits
-- Returns: the group's size after the add
--@include marker
local group = KEYS[1]
local groups = KEYS[2]
local first = KEYS[3]
local conf = KEYS[4]
local marker = KEYS[5]
local name = ARGV[1]
local now = tonumber(ARGV[3])

local stored = redis.call('HMGET', conf, 'grace_ms', 'max_delay_ms', 'max_size')
local grace = tonumber(stored[1]) or tonumber(ARGV[4])
local max_delay = tonumber(stored[2]) or tonumber(ARGV[5])
local max_size = tonumber(stored[3]) or tonumber(ARGV[6])

local size = redis.call('RPUSH', group, ARGV[2])
local since = tonumber(redis.call('HGET', first, name))
if size == 1 or not since then
  since = now
  redis.call('HSET', first, name, now)
end
local due = now + grace
if max_delay > 0 and since + max_delay < due then
  due = since + max_delay
end
if max_size > 0 and size >= max_size then
  due = now
end
redis.call('ZADD', groups, due, name)
signal_due(marker, due)
return size
