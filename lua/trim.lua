-- trim: drop completed tasks whose retention ended, and archived tasks beyond the archive's age
-- and size limits; a bounded batch per call (the janitor calls again while work remains). The
-- limits given are stored as the queue's own, so operator actions trim by the same ones.
--
-- KEYS[1] completed  zset: id -> record expiry ms
-- KEYS[2] archived   zset: id -> archived at ms
-- KEYS[3] msg        hash: id -> message
-- KEYS[4] result     hash: id -> result
-- KEYS[5] limits     hash: the queue's archive limits (max_size, max_age_ms) and `trimmed`
-- ARGV[1] now ms
-- ARGV[2] most archived tasks kept
-- ARGV[3] longest an archived task is kept, ms
-- ARGV[4] most tasks dropped per kind in this call
-- Returns: {completed dropped, archived dropped}
--@include trim_archive
local completed = KEYS[1]
local archived = KEYS[2]
local msg = KEYS[3]
local result = KEYS[4]
local limits = KEYS[5]
local limit = tonumber(ARGV[4])

redis.call('HSET', limits, 'max_size', ARGV[2], 'max_age_ms', ARGV[3])
local ids = redis.call('ZRANGE', completed, '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, limit)
if #ids > 0 then
  redis.call('ZREM', completed, unpack(ids))
  redis.call('HDEL', msg, unpack(ids))
  redis.call('HDEL', result, unpack(ids))
end
local dropped = trim_archive(archived, msg, result, limits, tonumber(ARGV[1]),
  tonumber(ARGV[2]), tonumber(ARGV[3]), limit)
return {#ids, dropped}
