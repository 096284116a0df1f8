-- recover: end the leases that expired by Redis TIME (their worker died, hung or lost Redis).
-- A task with a recorded cancel is archived as cancelled; the others go back to the front of
-- the queue, each loss counted so a task that keeps killing workers can be archived.
--
-- KEYS[1] lease     zset: active id -> lease expiry ms
-- KEYS[2] pending   list of ready ids
-- KEYS[3] marker    zset waking blocked workers
-- KEYS[4] lost      hash: id -> times its lease expired
-- KEYS[5] tokens    hash: active id -> fencing token
-- KEYS[6] cancel    hash: id -> cancel request (its uniqueness digest, or "")
-- KEYS[7] archived  zset: id -> archived at ms
-- ARGV[1] most tasks recovered in this call
-- Returns: {requeued ids, {id, uniqueness digest, ...} of the tasks archived as cancelled};
--   as many as ARGV[1] in all means call again. The caller releases those digests' locks.
--@include marker
--@include lease
--@include redis_time
local lease = KEYS[1]
local pending = KEYS[2]
local marker = KEYS[3]
local lost = KEYS[4]
local tokens = KEYS[5]
local cancel = KEYS[6]
local archived = KEYS[7]

local now = redis_now_ms()
local ids = redis.call('ZRANGE', lease, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
local requeued = {}
local cancelled = {}
-- Pushed in reverse so the task whose lease expired first is dequeued first.
for i = #ids, 1, -1 do
  local id = ids[i]
  end_lease(lease, tokens, id)
  local digest = redis.call('HGET', cancel, id)
  if digest then
    redis.call('HDEL', cancel, id)
    redis.call('HDEL', lost, id)
    redis.call('ZADD', archived, now, id)
    cancelled[#cancelled + 1] = id
    cancelled[#cancelled + 1] = digest
  else
    redis.call('HINCRBY', lost, id, 1)
    redis.call('RPUSH', pending, id)
    table.insert(requeued, 1, id)
  end
end
if #requeued > 0 then
  signal_ready(marker)
end
return {requeued, cancelled}
