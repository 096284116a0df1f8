-- set_flow: store a queue's flow limits (rate limit, concurrency cap), replacing any; see
-- lua/includes/flow.lua for the fields. A changed rate starts afresh with a full burst.
-- Wakes a worker, since looser limits may let waiting tasks start at once.
--
-- KEYS[1] flow    hash: the queue's flow limits and their state
-- KEYS[2] marker  zset waking blocked workers
-- ARGV[1] ms between task starts, or "" for no rate limit
-- ARGV[2] burst: task starts allowed at once after a pause
-- ARGV[3] most tasks leased at once, or "" for no cap
-- ARGV[4] the rate as the operator wrote it (for display), or ""
-- Returns: 1
--@include marker
local flow = KEYS[1]
local marker = KEYS[2]

redis.call('DEL', flow)
if ARGV[1] ~= '' then
  redis.call('HSET', flow, 'interval', ARGV[1], 'burst', ARGV[2], 'rate', ARGV[4])
end
if ARGV[3] ~= '' then
  redis.call('HSET', flow, 'max_active', ARGV[3])
end
signal_ready(marker)
return 1
