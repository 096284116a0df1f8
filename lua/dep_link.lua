-- dep_link: register a dependant with one of its parents, in the parent's slot. A parent that
-- is still live records the child in `children` (its settle script then records its outcome
-- for delivery); a parent already final answers with its outcome, which the caller delivers.
--
-- KEYS[1] msg        hash: id -> message
-- KEYS[2] lease      zset: active id -> lease expiry ms
-- KEYS[3] scheduled  zset: id -> due ms
-- KEYS[4] retry      zset: id -> next attempt ms
-- KEYS[5] archived   zset: id -> archived at ms
-- KEYS[6] completed  zset: id -> record expiry ms
-- KEYS[7] result     hash: id -> result
-- KEYS[8] children   hash: id -> 1 while it has dependants (what the settling scripts check)
-- KEYS[9] outbox     hash: id -> its final outcome, recorded for its dependants
-- KEYS[10] held      hash: id -> message of a task itself waiting for its parents
-- KEYS[11] dependants list: the parent's dependants, msgpack {child queue, child id, index} each
-- ARGV[1] parent id
-- ARGV[2] child queue
-- ARGV[3] child id
-- ARGV[4] the parent's index among the child's parents (from 0)
-- ARGV[5] "1" when the parent is enqueued after this call (a chain or group being built)
-- Returns: {1} linked; {2, outcome entry} final with an undelivered outcome; {3, result or ""}
--   completed and kept; {4, message} archived (the caller reads its error)
-- Errors: NOT_FOUND (no such parent, live, held or kept: it never existed, or it finished and
--   was not kept)
--@include codes
--@include task_state
local msg = KEYS[1]
local lease = KEYS[2]
local scheduled = KEYS[3]
local retry = KEYS[4]
local archived = KEYS[5]
local completed = KEYS[6]
local result = KEYS[7]
local children = KEYS[8]
local outbox = KEYS[9]
local held = KEYS[10]
local dependants = KEYS[11]
local id = ARGV[1]

local entry = redis.call('HGET', outbox, id)
if entry then
  return {2, entry}
end
local state = task_state(msg, lease, scheduled, retry, archived, completed, id)
if state == 'completed' then
  return {3, redis.call('HGET', result, id) or ''}
end
if state == 'archived' then
  return {4, redis.call('HGET', msg, id)}
end
if not state and ARGV[5] ~= '1' and redis.call('HEXISTS', held, id) == 0 then
  return NOT_FOUND
end
-- Appended, never rewritten, so a parent with many dependants costs O(1) per link. A repeated
-- link (a resend) is appended again: harmless, dep_report ignores a report it already has.
redis.call('HSET', children, id, 1)
redis.call('RPUSH', dependants, cmsgpack.pack({ARGV[2], ARGV[3], tonumber(ARGV[4])}))
return {1}
