-- agg_due: the groups due to be aggregated (by the caller's clock), and when the next one is.
--
-- KEYS[1] groups  zset: group -> when it is due to be aggregated (ms)
-- ARGV[1] now ms
-- ARGV[2] most groups returned
-- Returns: {groups due, next due ms or -1}
local groups = KEYS[1]
local due = redis.call('ZRANGE', groups, '-inf', tonumber(ARGV[1]), 'BYSCORE', 'LIMIT', 0,
  tonumber(ARGV[2]))
local head = redis.call('ZRANGE', groups, 0, 0, 'WITHSCORES')
local next_due = -1
if head[2] then
  next_due = tonumber(head[2])
end
return {due, next_due}
