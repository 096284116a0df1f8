-- requeue: hand active tasks back at once (graceful shutdown); they go to the front of the
-- queue because they were taken first, in the order given (the first id is dequeued next).
-- A recorded cancel stays with the task: the next dequeue reports it and it is not run.
--
-- KEYS[1] lease    zset: active id -> lease expiry ms
-- KEYS[2] pending  list of ready ids
-- KEYS[3] marker   zset waking blocked workers
-- KEYS[4] tokens   hash: active id -> fencing token
-- KEYS[5] kready   zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[6] kring    zset: keys to serve, by virtual time
-- KEYS[7] kwait    zset: keys waiting for a token
-- KEYS[8] kstate   hash: per-key counts and state, keyed task -> member
-- ARGV[2i-1], ARGV[2i] id and the token of its lease, for each task i
-- Returns: how many were handed back (ids whose lease is gone or not this token's are skipped)
--@include marker
--@include lease
--@include keyed
--@include redis_time
local lease = KEYS[1]
local pending = KEYS[2]
local marker = KEYS[3]
local tokens = KEYS[4]
local kready = KEYS[5]
local kring = KEYS[6]
local kwait = KEYS[7]
local kstate = KEYS[8]

local now = redis_now_ms()
local moved = 0
for i = #ARGV - 1, 1, -2 do
  local id = ARGV[i]
  if holds_lease(tokens, id, ARGV[i + 1]) then
    end_lease(lease, tokens, id)
    if not keyed_back(kready, kring, kwait, kstate, marker, id, now) then
      redis.call('RPUSH', pending, id)
    end
    moved = moved + 1
  end
end
if moved > 0 then
  signal_ready(marker)
end
return moved
