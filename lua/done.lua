-- done: acknowledge finished tasks (one or a batch): drop them, or keep them as completed when
-- they have retention; release their uniqueness locks; count them as processed.
--
-- KEYS[1] lease          zset: active id -> lease expiry ms
-- KEYS[2] msg            hash: id -> message
-- KEYS[3] completed      zset: id -> record expiry ms
-- KEYS[4] result         hash: id -> result
-- KEYS[5] lost           hash: id -> times its lease expired
-- KEYS[6] processed      total counter
-- KEYS[7] processed_day  daily counter
-- KEYS[8..] unique       uniqueness locks named by the tasks below
-- ARGV[1] expiry of the daily counter (epoch s)
-- ARGV[4i+2] id, ARGV[4i+3] keep-until ms (0: delete now), ARGV[4i+4] result ("" for none),
-- ARGV[4i+5] index into KEYS of its uniqueness lock (0: none), for each task i
-- Returns: array: number acknowledged, then the ids that were not active (left untouched)
--@include counters
--@include unique
local lease = KEYS[1]
local msg = KEYS[2]
local completed = KEYS[3]
local result = KEYS[4]
local lost = KEYS[5]
local processed = KEYS[6]
local processed_day = KEYS[7]

local done = 0
local out = {0}
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('ZREM', lease, id) == 0 then
    out[#out + 1] = id
  else
    done = done + 1
    redis.call('HDEL', lost, id)
    local keep_until = tonumber(ARGV[i + 1])
    if keep_until > 0 then
      redis.call('ZADD', completed, keep_until, id)
      if ARGV[i + 2] ~= '' then
        redis.call('HSET', result, id, ARGV[i + 2])
      end
    else
      redis.call('HDEL', msg, id)
    end
    local lock = tonumber(ARGV[i + 3])
    if lock > 0 then
      release_unique(KEYS[lock], id)
    end
  end
end
if done > 0 then
  count(processed, processed_day, ARGV[1], done)
end
out[1] = done
return out
