-- dequeue: take up to N ready tasks from one queue and lease them to the caller. Which queue to
-- ask is decided in Python (weighted or strict); a paused queue answers PAUSED.
--
-- KEYS[1] pending    list of ready ids
-- KEYS[2] lease      zset: active id -> lease expiry ms
-- KEYS[3] msg        hash: id -> message
-- KEYS[4] paused     present while paused
-- KEYS[5] marker     zset waking blocked workers
-- KEYS[6] lost       hash: id -> times its lease expired
-- ARGV[1] lease expiry ms
-- ARGV[2] how many tasks at most
-- Returns: flat array id1, message1, lost1, id2, ... (empty when nothing is ready)
-- Errors: PAUSED
--@include codes
--@include marker
local pending = KEYS[1]
local lease = KEYS[2]
local msg = KEYS[3]
local paused = KEYS[4]
local marker = KEYS[5]
local lost = KEYS[6]

if redis.call('EXISTS', paused) == 1 then
  return PAUSED
end
local ids = redis.call('RPOP', pending, tonumber(ARGV[2]))
if not ids then
  return {}
end
local out = {}
for _, id in ipairs(ids) do
  local message = redis.call('HGET', msg, id)
  -- An id without a message was deleted meanwhile; it is dropped, not leased.
  if message then
    redis.call('ZADD', lease, ARGV[1], id)
    local times = redis.call('HGET', lost, id)
    out[#out + 1] = id
    out[#out + 1] = message
    out[#out + 1] = tonumber(times or 0)
  end
end
-- Hand the wake-up on, so another blocked worker takes what is left.
if redis.call('LLEN', pending) > 0 then
  signal_ready(marker)
end
return out
