-- done: acknowledge finished tasks (one or a batch): drop them, or keep them as completed when
-- they have retention; release their uniqueness locks; count them as processed. Only the
-- holder of a task's current lease token settles it; a stale token changes nothing.
--
-- KEYS[1] lease          zset: active id -> lease expiry ms
-- KEYS[2] msg            hash: id -> message
-- KEYS[3] completed      zset: id -> record expiry ms
-- KEYS[4] result         hash: id -> result
-- KEYS[5] lost           hash: id -> times its lease expired
-- KEYS[6] processed      total counter
-- KEYS[7] processed_day  daily counter
-- KEYS[8] tokens         hash: active id -> fencing token
-- KEYS[9] cancel         hash: id -> cancel request
-- KEYS[10] flow          hash: the queue's flow limits (a freed slot wakes a held worker)
-- KEYS[11] marker        zset waking blocked workers
-- KEYS[12..] unique      uniqueness locks named by the tasks below
-- ARGV[1] expiry of the daily counter (epoch s)
-- ARGV[5i+2] id, ARGV[5i+3] lease token, ARGV[5i+4] keep-until ms (0: delete now),
-- ARGV[5i+5] result ("" for none), ARGV[5i+6] index into KEYS of its uniqueness lock (0: none)
-- Returns: array: number acknowledged, then the ids not settled (lease gone or stale token;
--   left untouched)
--@include counters
--@include unique
--@include lease
--@include flow
local lease = KEYS[1]
local msg = KEYS[2]
local completed = KEYS[3]
local result = KEYS[4]
local lost = KEYS[5]
local processed = KEYS[6]
local processed_day = KEYS[7]
local tokens = KEYS[8]
local cancel = KEYS[9]

local done = 0
local out = {0}
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  if not holds_lease(tokens, id, ARGV[i + 1]) then
    out[#out + 1] = id
  else
    done = done + 1
    end_lease(lease, tokens, id)
    redis.call('HDEL', lost, id)
    redis.call('HDEL', cancel, id)
    local keep_until = tonumber(ARGV[i + 2])
    if keep_until > 0 then
      redis.call('ZADD', completed, keep_until, id)
      if ARGV[i + 3] ~= '' then
        redis.call('HSET', result, id, ARGV[i + 3])
      end
    else
      redis.call('HDEL', msg, id)
    end
    local lock = tonumber(ARGV[i + 4])
    if lock > 0 then
      release_unique(KEYS[lock], id)
    end
  end
end
if done > 0 then
  flow_freed(KEYS[10], KEYS[11])
  count(processed, processed_day, ARGV[1], done)
end
out[1] = done
return out
