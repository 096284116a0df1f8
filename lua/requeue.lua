-- requeue: hand active tasks back at once (graceful shutdown); they go to the front of the
-- queue because they were taken first, in the order given (the first id is dequeued next).
--
-- KEYS[1] lease    zset: active id -> lease expiry ms
-- KEYS[2] pending  list of ready ids
-- KEYS[3] marker   zset waking blocked workers
-- ARGV[1..] ids
-- Returns: how many were handed back (ids no longer active are skipped)
--@include marker
local lease = KEYS[1]
local pending = KEYS[2]
local marker = KEYS[3]

local moved = 0
for i = #ARGV, 1, -1 do
  local id = ARGV[i]
  if redis.call('ZREM', lease, id) == 1 then
    redis.call('RPUSH', pending, id)
    moved = moved + 1
  end
end
if moved > 0 then
  signal_ready(marker)
end
return moved
