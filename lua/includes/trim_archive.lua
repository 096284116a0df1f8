-- Drop archived tasks older than max_age_ms, then the oldest beyond max_size; at most `limit`
-- per call so a huge archive is trimmed over several calls, never in one long script. Every
-- task dropped is counted in the queue's limits hash (field `trimmed`): a deletion by policy
-- stays visible to operators and audits.
local function trim_archive(archived, msg, result, limits, now, max_size, max_age_ms, limit)
  local ids = redis.call('ZRANGE', archived, '-inf', now - max_age_ms, 'BYSCORE', 'LIMIT', 0, limit)
  local extra = redis.call('ZCARD', archived) - #ids - max_size
  if extra > 0 and #ids < limit then
    local more = redis.call('ZRANGE', archived, #ids, #ids + math.min(extra, limit - #ids) - 1)
    for _, id in ipairs(more) do
      ids[#ids + 1] = id
    end
  end
  if #ids > 0 then
    redis.call('ZREM', archived, unpack(ids))
    redis.call('HDEL', msg, unpack(ids))
    redis.call('HDEL', result, unpack(ids))
    -- HINCRBY would fail on a corrupt count and block archiving; a count that is not a plain
    -- non-negative integer ("1.5", "inf", "0x10" pass tonumber) starts again from this trim.
    local stored = redis.call('HGET', limits, 'trimmed')
    local before = 0
    if stored and string.match(stored, '^%d+$') then
      before = tonumber(stored)
    end
    redis.call('HSET', limits, 'trimmed', string.format('%d', before + #ids))
  end
  return #ids
end
