-- The parent side of dependencies (docs/workflows.md). When a task that has dependants
-- (`children` holds its id) reaches a final state, the outcome is recorded in the same step, in
-- the task's own slot: `outbox` id -> msgpack [outcome, data] and `outbox_at` id -> when. The
-- first final state counts (a task run again by an operator later does not report twice).
-- Whoever finds the record undelivered (the worker right after settling, or the sweep for a
-- crash in between) delivers it to every child with dep_report, which is idempotent, and
-- then removes it with dep_ack. Returns true when a record was made or exists.
--@include redis_time
local function record_outcome(children, outbox, outbox_at, id, entry)
  if redis.call('HEXISTS', children, id) == 0 then
    return false
  end
  if redis.call('HSETNX', outbox, id, entry) == 1 then
    redis.call('ZADD', outbox_at, redis_now_ms(), id)
  end
  return true
end
