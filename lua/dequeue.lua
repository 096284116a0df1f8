-- dequeue: take up to N ready tasks from one queue and lease them to the caller, each with a
-- new fencing token. Which queue to ask is decided in Python (weighted or strict); a paused
-- queue answers PAUSED. Lease expiry is Redis TIME + the lease duration.
--
-- KEYS[1] pending    list of ready ids
-- KEYS[2] lease      zset: active id -> lease expiry ms
-- KEYS[3] msg        hash: id -> message
-- KEYS[4] paused     present while paused
-- KEYS[5] marker     zset waking blocked workers
-- KEYS[6] lost       hash: id -> times its lease expired
-- KEYS[7] tokens     hash: active id -> fencing token
-- KEYS[8] seq        counter issuing fencing tokens
-- KEYS[9] cancel     hash: id -> cancel request
-- KEYS[10] flow      hash: the queue's rate limit and concurrency cap, and their state
-- ARGV[1] lease duration ms
-- ARGV[2] how many tasks at most
-- Returns: flat array id1, message1, lost1, token1, cancelled1 (1 when a cancel is recorded:
--   the worker archives it as cancelled without running it), id2, ... (empty: nothing ready);
--   when the queue's flow limits hold ready tasks back, one more element follows the tasks:
--   {reason ('rate' or 'cap'), ms the caller may sleep before asking again (-1: until woken)}
-- Errors: PAUSED
--@include codes
--@include marker
--@include redis_time
--@include flow
local pending = KEYS[1]
local lease = KEYS[2]
local msg = KEYS[3]
local paused = KEYS[4]
local marker = KEYS[5]
local lost = KEYS[6]
local tokens = KEYS[7]
local seq = KEYS[8]
local cancel = KEYS[9]
local flow = KEYS[10]

if redis.call('EXISTS', paused) == 1 then
  return PAUSED
end
local now = redis_now_ms()
local asked = tonumber(ARGV[2])
local limited = flow_load(flow, lease, now)
local want = asked
if limited then
  want = flow_allow(limited, asked)
end
local ids = want > 0 and redis.call('RPOP', pending, want)
if not ids then
  if limited and want < asked then
    local hold = flow_commit(flow, marker, limited, 0, asked, redis.call('LLEN', pending))
    if hold then
      return {hold}
    end
  end
  return {}
end
local until_ms = now + tonumber(ARGV[1])
local out = {}
local started = 0
for _, id in ipairs(ids) do
  local message = redis.call('HGET', msg, id)
  -- An id without a message was deleted meanwhile; it is dropped, not leased.
  if message then
    started = started + 1
    local token = redis.call('INCR', seq)
    redis.call('ZADD', lease, until_ms, id)
    redis.call('HSET', tokens, id, token)
    out[#out + 1] = id
    out[#out + 1] = message
    out[#out + 1] = tonumber(redis.call('HGET', lost, id) or 0)
    out[#out + 1] = token
    out[#out + 1] = redis.call('HEXISTS', cancel, id)
  end
end
local left = redis.call('LLEN', pending)
if limited then
  local hold = flow_commit(flow, marker, limited, started, asked, left)
  if hold then
    out[#out + 1] = hold
    return out
  end
end
-- Hand the wake-up on, so another blocked worker takes what is left.
if left > 0 then
  signal_ready(marker)
end
return out
