-- flow_status: read a queue's flow limits and state with the counts they act on, at one instant
-- of the Redis clock that judges them (in a cluster, that of the queue's shard).
--
-- KEYS[1] flow     hash: the queue's flow limits and their state
-- KEYS[2] lease    zset: active id -> lease expiry ms
-- KEYS[3] pending  list of ready ids
-- KEYS[4] kready   zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[5] kring    zset: keys to serve, by virtual time
-- KEYS[6] kwait    zset: keys waiting for a token
-- KEYS[7] kstate   hash: per-key state (p:<digest> 'w' marks a key waiting for a token)
-- ARGV: none
-- Returns: {{interval, burst, max_active, tat, held, rate, key_interval, key_burst,
--   key_max_active, key_rate, key_hold} (false where absent), leased count, pending count
--   (keyed ready tasks included), Redis TIME in ms as a string, {keyed ready tasks, keys in the
--   round robin, keys waiting for a token of their rate (of the first 1,000 kwait entries)}
--   (the limited types' lanes left out of these three),
--   {per limited task type: {type, "interval|burst|cap|rate", ready tasks in its lane, running
--   from its lane, its lane's tat or false, 'c'/'w' when its lane waits for a slot/a token}},
--   {key, its limits, key, its limits ...: the keys with limits of their own}}
--@include redis_time
--@include keyed
local fields = redis.call('HMGET', KEYS[1], 'interval', 'burst', 'max_active', 'tat', 'held',
  'rate', 'key_interval', 'key_burst', 'key_max_active', 'key_rate', 'key_hold')
-- The limited types' lanes first: their tasks are counted per type, not among the keys'.
local types = {}
local own = {}
local lanes = {}
local keyed = redis.call('ZCARD', KEYS[4])
local ring = redis.call('ZCARD', KEYS[5])
local flow = redis.call('HGETALL', KEYS[1])
for i = 1, #flow, 2 do
  local t = string.match(flow[i], '^T:(.*)$')
  local k = string.match(flow[i], '^K:(.*)$')
  if k then
    own[#own + 1] = k
    own[#own + 1] = flow[i + 1]
  end
  if t then
    local _, d = keyed_type_lane(KEYS[1], t)
    local lane = redis.call('HMGET', KEYS[7], 'n:' .. d, 'a:' .. d, 'r:' .. d, 'p:' .. d)
    types[#types + 1] = {t, flow[i + 1], lane[1] or '0', lane[2] or '0', lane[3], lane[4]}
    lanes[d] = true
    keyed = keyed - tonumber(lane[1] or 0)
    if redis.call('ZSCORE', KEYS[5], d) then
      ring = ring - 1
    end
  end
end
-- kwait also schedules the cleanup of idle keys' rate state: count only keys with tasks.
local waiting = 0
for _, d in ipairs(redis.call('ZRANGE', KEYS[6], 0, 999)) do
  if not lanes[d] and redis.call('HGET', KEYS[7], 'p:' .. d) == 'w' then
    waiting = waiting + 1
  end
end
return {fields, redis.call('ZCARD', KEYS[2]),
  redis.call('LLEN', KEYS[3]) + redis.call('ZCARD', KEYS[4]),
  tostring(redis_now_ms()), {keyed, ring, waiting}, types, own}
