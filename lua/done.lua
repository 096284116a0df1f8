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
-- KEYS[10] waiters       hash: id -> waiters registered for its final state
-- KEYS[11] progress      hash: id -> progress reported by its running handler
-- KEYS[12] children      hash: id -> its dependants (docs/workflows.md)
-- KEYS[13] outbox        hash: id -> its final outcome, recorded for its dependants
-- KEYS[14] outbox_at     zset: id -> when that outcome was recorded (ms)
-- KEYS[15] flow          hash: the queue's flow limits (a freed slot wakes a held worker)
-- KEYS[16] marker        zset waking blocked workers
-- KEYS[17] kready        zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[18] kring         zset: keys to serve, by virtual time
-- KEYS[19] kwait         zset: keys waiting for a token
-- KEYS[20] kstate        hash: per-key counts and state, keyed task -> member
-- KEYS[21..] unique      uniqueness locks named by the tasks below
-- ARGV[1] expiry of the daily counter (epoch s)
-- ARGV[2] prefix of the per-task channels announcing a final state to waiters
-- ARGV[5i+3] id, ARGV[5i+4] lease token, ARGV[5i+5] keep-until ms (0: delete now),
-- ARGV[5i+6] result ("" for none; kept only with a keep-until, reported to dependants), ARGV[5i+7] index into KEYS of its uniqueness lock (0: none)
-- Returns: array: number acknowledged, then the ids not settled (lease gone or stale token;
--   left untouched), then, only if any, an array of the settled ids whose outcome was recorded
--   for their dependants (deliver them)
--@include counters
--@include unique
--@include lease
--@include final
--@include outbox
--@include mp
--@include flow
--@include keyed
--@include redis_time
local lease = KEYS[1]
local msg = KEYS[2]
local completed = KEYS[3]
local result = KEYS[4]
local lost = KEYS[5]
local processed = KEYS[6]
local processed_day = KEYS[7]
local tokens = KEYS[8]
local cancel = KEYS[9]
local waiters = KEYS[10]
local progress = KEYS[11]
local children = KEYS[12]
local outbox = KEYS[13]
local outbox_at = KEYS[14]
local flow = KEYS[15]
local marker = KEYS[16]
local kready = KEYS[17]
local kring = KEYS[18]
local kwait = KEYS[19]
local kstate = KEYS[20]

local now = redis_now_ms()
local done = 0
local out = {0}
local reported = {}
for i = 3, #ARGV, 5 do
  local id = ARGV[i]
  if not holds_lease(tokens, id, ARGV[i + 1]) then
    out[#out + 1] = id
  else
    done = done + 1
    end_lease(lease, tokens, id)
    keyed_end(kready, kring, kwait, kstate, marker, id, true, false, now)
    redis.call('HDEL', lost, id)
    redis.call('HDEL', cancel, id)
    redis.call('HDEL', progress, id)
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
    announce_final(waiters, ARGV[2], id, 'completed')
    -- Checked before the entry is built: copying a large result costs every plain task.
    if redis.call('HEXISTS', children, id) == 1 then
      local data = MP_NIL
      if ARGV[i + 3] ~= '' then
        data = mp_bin(ARGV[i + 3])
      end
      record_outcome(children, outbox, outbox_at, id, mp_array(2) .. mp_str('completed') .. data)
      reported[#reported + 1] = id
    end
  end
end
if done > 0 then
  flow_freed(flow, marker)
  count(processed, processed_day, ARGV[1], done)
end
out[1] = done
if #reported > 0 then
  out[#out + 1] = reported
end
return out
