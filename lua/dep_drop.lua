-- dep_drop: an operator deletes a task held for its parents: an orphan left by a client that
-- died while building a chain or group (its parents were never enqueued), or one no longer
-- wanted. Its own dependants are told it was deleted, as for any deleted task: its outcome is
-- recorded for them in the same step (the sweep delivers it).
--
-- KEYS[1] held       hash: id -> held message
-- KEYS[2] deps       hash: id -> msgpack {policy, n, got, failed}
-- KEYS[3] names      hash: "<index>:<id>" -> that parent's name
-- KEYS[4] reports    hash: "<index>:<id>" -> one parent's outcome delivered to it
-- KEYS[5] waiters    hash: id -> waiters registered for its final state
-- KEYS[6] children   hash: id -> 1 while it has dependants
-- KEYS[7] outbox     hash: id -> its final outcome, recorded for its dependants
-- KEYS[8] outbox_at  zset: id -> when that outcome was recorded (ms)
-- ARGV[1] id
-- ARGV[2] prefix of the per-task channels announcing a final state to waiters
-- ARGV[3] its outcome for dependants: msgpack ["deleted", nil]
-- Returns: 1 deleted; 2 deleted, its outcome recorded for its dependants
-- Errors: NOT_FOUND (no task held under that id)
--@include codes
--@include final
--@include outbox
local held = KEYS[1]
local deps = KEYS[2]
local names = KEYS[3]
local reports = KEYS[4]
local waiters = KEYS[5]
local children = KEYS[6]
local outbox = KEYS[7]
local outbox_at = KEYS[8]
local id = ARGV[1]

if redis.call('HEXISTS', held, id) == 0 then
  return NOT_FOUND
end
local stored = redis.call('HGET', deps, id)
if stored then
  local rec = cmsgpack.unpack(stored)
  for i = 0, rec.n - 1 do
    redis.call('HDEL', reports, i .. ':' .. id)
    redis.call('HDEL', names, i .. ':' .. id)
  end
end
redis.call('HDEL', held, id)
redis.call('HDEL', deps, id)
announce_final(waiters, ARGV[2], id, 'deleted')
if record_outcome(children, outbox, outbox_at, id, ARGV[3]) then
  return 2
end
return 1
