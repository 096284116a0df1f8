-- extend: renew the leases of tasks a worker is still running.
--
-- KEYS[1] lease  zset: active id -> lease expiry ms
-- ARGV[1] new lease expiry ms
-- ARGV[2..] ids
-- Returns: the ids whose lease was already gone (recovered or finished elsewhere)
local lease = KEYS[1]

local gone = {}
for i = 2, #ARGV do
  if redis.call('ZADD', lease, 'XX', 'CH', ARGV[1], ARGV[i]) == 0
      and not redis.call('ZSCORE', lease, ARGV[i]) then
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
