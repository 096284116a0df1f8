-- recover: return tasks whose lease expired (their worker died or hung) to the front of the
-- queue, counting each loss so a task that keeps killing workers can be archived.
--
-- KEYS[1] lease    zset: active id -> lease expiry ms
-- KEYS[2] pending  list of ready ids
-- KEYS[3] marker   zset waking blocked workers
-- KEYS[4] lost     hash: id -> times its lease expired
-- ARGV[1] now ms
-- ARGV[2] most tasks recovered in this call
-- Returns: the recovered ids; as many as ARGV[2] means call again
--@include marker
local lease = KEYS[1]
local pending = KEYS[2]
local marker = KEYS[3]
local lost = KEYS[4]

local ids = redis.call('ZRANGE', lease, '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
-- Pushed in reverse so the task whose lease expired first is dequeued first.
for i = #ids, 1, -1 do
  local id = ids[i]
  redis.call('ZREM', lease, id)
  redis.call('HINCRBY', lost, id, 1)
  redis.call('RPUSH', pending, id)
end
if #ids > 0 then
  signal_ready(marker)
end
return ids
