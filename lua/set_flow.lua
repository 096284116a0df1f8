-- set_flow: store a queue's flow limits (rate limit, concurrency cap, and the per-key limits of
-- its keyed tasks), replacing any; see lua/includes/flow.lua and lua/includes/keyed.lua for
-- the fields. Changed limits start afresh (a full burst) and wake a worker, since looser limits
-- may let waiting tasks start at once; the same limits again (every server that sets them in its
-- config stores them at its start) change nothing.
--
-- KEYS[1] flow    hash: the queue's flow limits and their state
-- KEYS[2] marker  zset waking blocked workers
-- ARGV[1] ms between task starts, or "" for no rate limit
-- ARGV[2] burst: task starts allowed at once after a pause
-- ARGV[3] most tasks leased at once, or "" for no cap
-- ARGV[4] the rate as the operator wrote it (for display), or ""
-- ARGV[5] per key: ms between task starts of one key, or "" for no per-key rate limit
-- ARGV[6] per key: burst
-- ARGV[7] per key: most tasks of one key leased at once, or "" for no per-key cap
-- ARGV[8] per key: the rate as written, or ""
-- ARGV[9] "1": a task waiting for a retry keeps its key's slot (key_hold_on_retry), else ""
-- Returns: 1 when the limits changed, 0 when they were already these
--@include marker
local flow = KEYS[1]
local marker = KEYS[2]

local fields = {'interval', 'burst', 'max_active', 'rate', 'key_interval', 'key_burst',
                'key_max_active', 'key_rate', 'key_hold'}
-- Which fields are stored: a burst (and the rate's text) only with its rate.
local present = {ARGV[1] ~= '', ARGV[1] ~= '', ARGV[3] ~= '', ARGV[1] ~= '', ARGV[5] ~= '',
                 ARGV[5] ~= '', ARGV[7] ~= '', ARGV[5] ~= '', ARGV[9] ~= ''}

local stored = redis.call('HMGET', flow, unpack(fields))
local same = true
for i = 1, #fields do
  local wanted = present[i] and ARGV[i] or false
  if stored[i] ~= wanted then
    same = false
  end
end
if same then
  return 0
end

redis.call('DEL', flow)
for i = 1, #fields do
  if present[i] then
    redis.call('HSET', flow, fields[i], ARGV[i])
  end
end
signal_ready(marker)
return 1
