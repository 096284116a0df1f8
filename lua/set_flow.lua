-- set_flow: store a queue's flow limits (rate limit, concurrency cap, and the per-key limits of
-- its keyed tasks), replacing any; see lua/includes/flow.lua and lua/includes/keyed.lua for
-- the fields. Changed limits start afresh (a full burst) and wake a worker, since looser limits
-- may let waiting tasks start at once; the same limits again (every server that sets them in its
-- config stores them at its start) change nothing.
--
-- KEYS[1] flow    hash: the queue's flow limits and their state
-- KEYS[2] marker  zset waking blocked workers
-- KEYS[3] kready  zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[4] kring   zset: keys to serve, by virtual time
-- KEYS[5] kwait   zset: keys waiting for a token of their rate limit
-- KEYS[6] kstate  hash: per-key counts and state
-- ARGV[1] ms between task starts, or "" for no rate limit
-- ARGV[2] burst: task starts allowed at once after a pause
-- ARGV[3] most tasks leased at once, or "" for no cap
-- ARGV[4] the rate as the operator wrote it (for display), or ""
-- ARGV[5] per key: ms between task starts of one key, or "" for no per-key rate limit
-- ARGV[6] per key: burst
-- ARGV[7] per key: most tasks of one key leased at once, or "" for no per-key cap
-- ARGV[8] per key: the rate as written, or ""
-- ARGV[9] "1": a task waiting for a retry keeps its key's slot (key_hold_on_retry), else ""
-- ARGV[10..] per lane with limits of its own, four each: "T" (a task type) or "K" (a fairness
--   key), its name, its limits "interval|burst|cap|rate|weight" (empty parts for none), and the
--   digest of its lane (lua/includes/keyed.lua); stored as T:<type> or K:<key>, and D:<digest>,
--   with `types` and `key_limits` counting them
-- Returns: 1 when the limits changed, 0 when they were already these
--@include marker
--@include redis_time
--@include keyed
local flow = KEYS[1]
local marker = KEYS[2]
local kready = KEYS[3]
local kring = KEYS[4]
local kwait = KEYS[5]
local kstate = KEYS[6]

local fields = {'interval', 'burst', 'max_active', 'rate', 'key_interval', 'key_burst',
                'key_max_active', 'key_rate', 'key_hold'}
-- Which fields are stored: a burst (and the rate's text) only with its rate.
local present = {ARGV[1] ~= '', ARGV[1] ~= '', ARGV[3] ~= '', ARGV[1] ~= '', ARGV[5] ~= '',
                 ARGV[5] ~= '', ARGV[7] ~= '', ARGV[5] ~= '', ARGV[9] ~= ''}
local wanted = {}
for i = 1, #fields do
  if present[i] then
    wanted[fields[i]] = ARGV[i]
  end
end
local counts = {T = 0, K = 0}
for i = 10, #ARGV, 4 do
  wanted[ARGV[i] .. ':' .. ARGV[i + 1]] = ARGV[i + 2]
  wanted['D:' .. ARGV[i + 3]] = ARGV[i + 2]
  counts[ARGV[i]] = counts[ARGV[i]] + 1
end
if counts.T > 0 then
  wanted['types'] = tostring(counts.T)
end
if counts.K > 0 then
  wanted['key_limits'] = tostring(counts.K)
end

-- The limits' state (not limits): the rate's tat, the timer, the cap's held flag.
local state = {tat = true, timer = true, held = true}
local stored = redis.call('HGETALL', flow)
local same = true
local count = 0
for i = 1, #stored, 2 do
  if not state[stored[i]] then
    count = count + 1
    if wanted[stored[i]] ~= stored[i + 1] then
      same = false
    end
  end
end
for _ in pairs(wanted) do
  count = count - 1
end
if same and count == 0 then
  return 0
end

redis.call('DEL', flow)
for field, value in pairs(wanted) do
  redis.call('HSET', flow, field, value)
end
-- Keys and types' lanes start afresh too: their rate state is dropped, and those waiting for
-- a token under the old limits go back to the round robin (a lane at its cap goes back when
-- one of its running tasks ends, and starts afresh then).
local now = redis_now_ms()
for _, d in ipairs(redis.call('ZRANGE', kring, 0, -1)) do
  redis.call('HDEL', kstate, 'r:' .. d)
end
-- The lanes of the types limited before and after (at most 256 each), wherever they are: one
-- whose tasks all run, or one waiting at its cap, is in neither the ring nor kwait, and would
-- otherwise keep the old rate's debt.
local lanes = {}
for i = 1, #stored, 2 do
  local d = string.match(stored[i], '^D:(.*)$')
  if d then
    lanes[#lanes + 1] = 'r:' .. d
  end
end
for i = 12, #ARGV, 3 do
  lanes[#lanes + 1] = 'r:' .. ARGV[i]
end
if #lanes > 0 then
  redis.call('HDEL', kstate, unpack(lanes))
end
for _, d in ipairs(redis.call('ZRANGE', kwait, 0, -1)) do
  redis.call('ZREM', kwait, d)
  redis.call('HDEL', kstate, 'r:' .. d)
  if redis.call('HGET', kstate, 'p:' .. d) == 'w' then
    redis.call('HDEL', kstate, 'p:' .. d)
    keyed_wake(kready, kring, kwait, kstate, marker, d, true, now)
  elseif not redis.call('HGET', kstate, 'n:' .. d) and not redis.call('HGET', kstate, 'a:' .. d) then
    redis.call('HDEL', kstate, 'k:' .. d)
  end
end
redis.call('HDEL', kstate, 'kt')
signal_ready(marker)
return 1
