-- A task reached a final state (completed, archived, deleted): wake whoever waits for it
-- (Client.wait_result). Only a task with a registered waiter publishes, so queues nobody waits
-- on send nothing. The waiter subscribed before it registered and reads the task's state after
-- registering, so a completion is either seen by that read or published to it: none is missed.
-- The registration is consumed here; a later waiter registers again.
local function announce_final(waiters, channel_prefix, id, outcome)
  if redis.call('HEXISTS', waiters, id) == 1 then
    redis.call('HDEL', waiters, id)
    redis.call('PUBLISH', channel_prefix .. id, outcome)
  end
end
