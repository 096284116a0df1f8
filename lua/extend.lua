-- extend: renew the leases a worker still holds (Redis TIME + the lease duration), and tell
-- it which of its tasks an operator asked to cancel (in case it missed the notification).
--
-- KEYS[1] lease   zset: active id -> lease expiry ms
-- KEYS[2] tokens  hash: active id -> fencing token
-- KEYS[3] cancel  hash: id -> cancel request
-- ARGV[1] lease duration ms
-- ARGV[2i], ARGV[2i+1] id and the token of its lease, for each task i
-- Returns: {ids whose lease is gone or not this token's (nothing changed for them),
--   ids renewed that have a cancel recorded}
--@include lease
--@include redis_time
local lease = KEYS[1]
local tokens = KEYS[2]
local cancel = KEYS[3]

local until_ms = redis_now_ms() + tonumber(ARGV[1])
local gone = {}
local cancelled = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if holds_lease(tokens, id, ARGV[i + 1]) then
    redis.call('ZADD', lease, until_ms, id)
    if redis.call('HEXISTS', cancel, id) == 1 then
      cancelled[#cancelled + 1] = id
    end
  else
    gone[#gone + 1] = id
  end
end
return {gone, cancelled}
