-- unwait: a waiter (Client.wait_result) gives up its registration without having been told of
-- a final state (it timed out, or found the task final when it looked). Registrations are
-- counted, so one waiter leaving never unregisters another that still waits.
--
-- KEYS[1] waiters   hash: id -> waiters registered for its final state
-- ARGV[1] id
-- Returns: waiters still registered for the task
local waiters = KEYS[1]
local id = ARGV[1]

local left = redis.call('HINCRBY', waiters, id, -1)
if left <= 0 then
  redis.call('HDEL', waiters, id)
  return 0
end
return left
