-- set_flow: store a queue's flow limits (rate limit, concurrency cap), replacing any; see
-- lua/includes/flow.lua for the fields. Changed limits start afresh (a full burst) and wake a
-- worker, since looser limits may let waiting tasks start at once; the same limits again (every
-- server that sets them in its config stores them at its start) change nothing.
--
-- KEYS[1] flow    hash: the queue's flow limits and their state
-- KEYS[2] marker  zset waking blocked workers
-- ARGV[1] ms between task starts, or "" for no rate limit
-- ARGV[2] burst: task starts allowed at once after a pause
-- ARGV[3] most tasks leased at once, or "" for no cap
-- ARGV[4] the rate as the operator wrote it (for display), or ""
-- Returns: 1 when the limits changed, 0 when they were already these
--@include marker
local flow = KEYS[1]
local marker = KEYS[2]

local function wanted(value, present)
  if present then
    return value
  end
  return false
end

local rated = ARGV[1] ~= ''
local stored = redis.call('HMGET', flow, 'interval', 'burst', 'max_active', 'rate')
if stored[1] == wanted(ARGV[1], rated) and stored[2] == wanted(ARGV[2], rated)
    and stored[3] == wanted(ARGV[3], ARGV[3] ~= '') and stored[4] == wanted(ARGV[4], rated) then
  return 0
end

redis.call('DEL', flow)
if ARGV[1] ~= '' then
  redis.call('HSET', flow, 'interval', ARGV[1], 'burst', ARGV[2], 'rate', ARGV[4])
end
if ARGV[3] ~= '' then
  redis.call('HSET', flow, 'max_active', ARGV[3])
end
signal_ready(marker)
return 1
