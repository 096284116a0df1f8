-- cancel: record an operator's request to cancel an active task, with the task, before the
-- request is announced on pub/sub. The record holds whoever holds the task: the running
-- worker hears it (notification, or its next lease renewal), the recoverer archives the task
-- as cancelled if its worker is gone, and a dequeue reports it so it is never started again.
--
-- KEYS[1] msg     hash: id -> message
-- KEYS[2] lease   zset: active id -> lease expiry ms
-- KEYS[3] cancel  hash: id -> cancel request
-- ARGV[1] id
-- ARGV[2] the task's uniqueness digest, or "" (the recoverer releases that lock)
-- Returns: 1 recorded (announce it now)
-- Errors: NOT_FOUND, WRONG_STATE (not active: delete or archive it instead)
--@include codes
local msg = KEYS[1]
local lease = KEYS[2]
local cancel = KEYS[3]
local id = ARGV[1]

if redis.call('HEXISTS', msg, id) == 0 then
  return NOT_FOUND
end
if not redis.call('ZSCORE', lease, id) then
  return WRONG_STATE
end
redis.call('HSET', cancel, id, ARGV[2])
return 1
