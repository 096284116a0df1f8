-- dep_hold: store a task that waits for its parents (enqueue with depends_on, a chain link, a
-- group's callback). It is held outside the task states (in `held`, not `msg`) until
-- dep_report has heard from every parent; see docs/workflows.md.
--
-- KEYS[1] msg       hash: id -> message
-- KEYS[2] archived  zset: id -> archived at ms
-- KEYS[3] held      hash: id -> held message (MessageTask.encode_held)
-- KEYS[4] deps      hash: id -> msgpack {policy, n, got, failed}
-- KEYS[5] result    hash: id -> result
-- KEYS[6] names     hash: "<index>:<id>" -> that parent's "queue/id" name
-- ARGV[1] id
-- ARGV[2] held message
-- ARGV[3] dependency record: msgpack map policy ("cancel" or "run"), n (parents), got (0),
--         parents (their "queue/id" names, for error texts: stored apart, in KEYS[6])
-- Returns: 1 held (also for a resend: the same held message, parents and policy); an archived
--   task with that id is replaced at once, as enqueue replaces it
-- Errors: CONFLICT (the id is used by a live or kept task, or held with another message,
--   other parents or another policy)
--@include codes
--@include id_status
local msg = KEYS[1]
local archived = KEYS[2]
local held = KEYS[3]
local deps = KEYS[4]
local result = KEYS[5]
local names = KEYS[6]
local id = ARGV[1]

-- A resend holds the same message on the same parents with the same policy; anything else
-- under a held id is another task (its parents would be linked at indexes this record lacks).
local new = cmsgpack.unpack(ARGV[3])
local parents = new.parents or {}
new.parents = nil

local function same_parents(record)
  local old = cmsgpack.unpack(record)
  if old.policy ~= new.policy or old.n ~= new.n then
    return false
  end
  for i = 1, new.n do
    if redis.call('HGET', names, (i - 1) .. ':' .. id) ~= tostring(parents[i]) then
      return false
    end
  end
  return true
end

local stored = redis.call('HGET', held, id)
if stored then
  local record = redis.call('HGET', deps, id)
  if stored == ARGV[2] and record and same_parents(record) then
    return 1
  end
  return CONFLICT
end
local status = id_status(msg, archived, id)
if status == 'taken' then
  return CONFLICT
end
if status == 'archived' then
  -- Not left in place: an operator could run it again, and the release would find the id taken.
  drop_archived(archived, result, id)
  redis.call('HDEL', msg, id)
end
redis.call('HSET', held, id, ARGV[2])
-- The names apart from the counter, one field per parent: a report reads its own (a late
-- report from an earlier task with this id is told apart) and unpacks a few fields, not every
-- name.
redis.call('HSET', deps, id, cmsgpack.pack(new))
for i = 1, new.n do
  redis.call('HSET', names, (i - 1) .. ':' .. id, tostring(parents[i]))
end
return 1
