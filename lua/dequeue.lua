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
-- ARGV[1] lease duration ms
-- ARGV[2] how many tasks at most
-- Returns: flat array id1, message1, lost1, token1, cancelled1 (1 when a cancel is recorded:
--   the worker archives it as cancelled without running it), id2, ... (empty: nothing ready)
-- Errors: PAUSED
--@include codes
--@include marker
--@include redis_time
local pending = KEYS[1]
local lease = KEYS[2]
local msg = KEYS[3]
local paused = KEYS[4]
local marker = KEYS[5]
local lost = KEYS[6]
local tokens = KEYS[7]
local seq = KEYS[8]
local cancel = KEYS[9]

if redis.call('EXISTS', paused) == 1 then
  return PAUSED
end
local ids = redis.call('RPOP', pending, tonumber(ARGV[2]))
if not ids then
  return {}
end
local until_ms = redis_now_ms() + tonumber(ARGV[1])
local out = {}
for _, id in ipairs(ids) do
  local message = redis.call('HGET', msg, id)
  -- An id without a message was deleted meanwhile; it is dropped, not leased.
  if message then
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
-- Hand the wake-up on, so another blocked worker takes what is left.
if redis.call('LLEN', pending) > 0 then
  signal_ready(marker)
end
return out
