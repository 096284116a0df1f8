-- agg_take: read (without removing) up to max size entries of a due group, for its aggregator.
-- Nothing is taken out here: agg_commit removes exactly these entries, and only if they are
-- still the group's head, so an aggregator that dies, or races another server's, loses or
-- doubles nothing.
--
-- KEYS[1] group   list: the group's entries, msgpack [id, message], oldest first
-- KEYS[2] groups  zset: group -> when it is due to be aggregated (ms)
-- KEYS[3] conf    hash: the limits the queue's aggregators stored
-- ARGV[1] group name
-- ARGV[2] now ms
-- ARGV[3] max size used when the queue stores none (0: none)
-- Returns: the entries, oldest first (empty: not due, or empty)
local group = KEYS[1]
local groups = KEYS[2]
local conf = KEYS[3]

local due = tonumber(redis.call('ZSCORE', groups, ARGV[1]))
if not due or due > tonumber(ARGV[2]) then
  return {}
end
local max_size = tonumber(redis.call('HGET', conf, 'max_size')) or tonumber(ARGV[3])
local last = -1
if max_size > 0 then
  last = max_size - 1
end
return redis.call('LRANGE', group, 0, last)
