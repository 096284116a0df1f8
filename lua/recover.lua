-- recover: end the leases that expired by Redis TIME (their worker died, hung or lost Redis).
-- The tasks go back to the front of the queue, each loss counted so a task that keeps killing
-- workers can be archived. A task with a recorded cancel never goes back: it is leased to the
-- caller instead, with a new fencing token, and the caller archives it as cancelled (its
-- message records why) with `archive_active`; if the caller dies first, that lease expires
-- and the next recover hands it on again, the cancel still recorded.
--
-- KEYS[1] lease     zset: active id -> lease expiry ms
-- KEYS[2] pending   list of ready ids
-- KEYS[3] marker    zset waking blocked workers
-- KEYS[4] lost      hash: id -> times its lease expired
-- KEYS[5] tokens    hash: active id -> fencing token
-- KEYS[6] cancel    hash: id -> cancel request (its uniqueness digest, or "")
-- KEYS[7] seq       counter issuing fencing tokens
-- KEYS[8] msg       hash: id -> message
-- KEYS[9] kready    zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[10] kring    zset: keys to serve, by virtual time
-- KEYS[11] kwait    zset: keys waiting for a token
-- KEYS[12] kstate   hash: per-key counts and state, keyed task -> member
-- ARGV[1] most tasks recovered in this call
-- ARGV[2] lease duration ms of the caller's leases on cancelled tasks
-- Returns: {requeued ids, {id, message, token, ...} of the cancelled tasks now leased to the
--   caller}; as many as ARGV[1] in all means call again.
--@include marker
--@include lease
--@include redis_time
--@include keyed
local lease = KEYS[1]
local pending = KEYS[2]
local marker = KEYS[3]
local lost = KEYS[4]
local tokens = KEYS[5]
local cancel = KEYS[6]
local seq = KEYS[7]
local msg = KEYS[8]
local kready = KEYS[9]
local kring = KEYS[10]
local kwait = KEYS[11]
local kstate = KEYS[12]

local now = redis_now_ms()
local ids = redis.call('ZRANGE', lease, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
local requeued = {}
local cancelled = {}
-- Pushed in reverse so the task whose lease expired first is dequeued first.
for i = #ids, 1, -1 do
  local id = ids[i]
  end_lease(lease, tokens, id)
  local message = redis.call('HGET', msg, id)
  if message and redis.call('HEXISTS', cancel, id) == 1 then
    local token = redis.call('INCR', seq)
    redis.call('ZADD', lease, now + tonumber(ARGV[2]), id)
    redis.call('HSET', tokens, id, token)
    cancelled[#cancelled + 1] = id
    cancelled[#cancelled + 1] = message
    cancelled[#cancelled + 1] = token
  else
    redis.call('HINCRBY', lost, id, 1)
    if not keyed_back(kready, kring, kwait, kstate, marker, id, now) then
      redis.call('RPUSH', pending, id)
    end
    table.insert(requeued, 1, id)
  end
end
if #requeued > 0 then
  signal_ready(marker)
end
return {requeued, cancelled}
