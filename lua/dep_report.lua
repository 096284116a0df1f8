-- dep_report: deliver one parent's final outcome to a held child, in the child's slot.
-- Idempotent: a report already recorded (same child, same parent index) or one for a child
-- already released changes nothing, so any number of deliverers may race or repeat. The
-- report that completes the set releases the child in the same step: pending with its parents'
-- outcomes appended to its message, or, when a parent did not complete and the policy is
-- "cancel", archived with an error naming that parent (and its own outcome recorded for its
-- own dependants, so a cancel travels down a chain).
--
-- KEYS[1] held       hash: id -> held message
-- KEYS[2] deps       hash: id -> msgpack {policy, n, got, failed}
-- KEYS[3] reports    hash: "<index>:<id>" -> one parent's outcome entry
-- KEYS[4] msg        hash: id -> message
-- KEYS[5] pending    list of ready ids
-- KEYS[6] marker     zset waking blocked workers
-- KEYS[7] archived   zset: id -> archived at ms
-- KEYS[8] waiters    hash: id -> waiters registered for its final state
-- KEYS[9] children   hash: id -> its dependants
-- KEYS[10] outbox    hash: id -> its final outcome, recorded for its dependants
-- KEYS[11] outbox_at zset: id -> when that outcome was recorded (ms)
-- KEYS[12] names     hash: "<index>:<id>" -> the parent expected there, "queue/id"
-- ARGV[1] child id
-- ARGV[2] the parent's index among the child's parents (from 0)
-- ARGV[3] outcome entry: msgpack [outcome, data, parent queue, parent id]
-- ARGV[4] outcome: "completed", "archived" or "deleted"
-- ARGV[5] prefix of the per-task channels announcing a final state to waiters
-- ARGV[6] the parent's name, "queue/id": a report from another parent (one of an earlier task
--   with the same id, delivered late) is ignored
-- Returns: 0 nothing to do (duplicate, or the child is released or gone); 1 recorded, still
--   waiting; 2 released to pending; 3 archived by the "cancel" policy; 4 archived by the
--   policy and its own outcome recorded for its dependants (deliver it)
-- Errors: CONFLICT (the child's id was taken by another task meanwhile: not released)
--@include codes
--@include marker
--@include mp
--@include final
--@include outbox
--@include id_status
local held = KEYS[1]
local deps = KEYS[2]
local reports = KEYS[3]
local msg = KEYS[4]
local pending = KEYS[5]
local marker = KEYS[6]
local archived = KEYS[7]
local waiters = KEYS[8]
local children = KEYS[9]
local outbox = KEYS[10]
local outbox_at = KEYS[11]
local names = KEYS[12]
local id = ARGV[1]
local index = tonumber(ARGV[2])

local stored = redis.call('HGET', deps, id)
if not stored then
  return 0
end
local field = index .. ':' .. id
if redis.call('HEXISTS', reports, field) == 1 then
  return 0
end
local expected = redis.call('HGET', names, field)
if expected and expected ~= ARGV[6] then
  return 0
end
local rec = cmsgpack.unpack(stored)
if index < 0 or index >= rec.n then
  return 0
end
redis.call('HSET', reports, field, ARGV[3])
rec.got = rec.got + 1
if ARGV[4] ~= 'completed' and not rec.failed then
  rec.failed = 'parent ' .. ARGV[6] .. ' ended ' .. ARGV[4]
end
if rec.got < rec.n then
  redis.call('HSET', deps, id, cmsgpack.pack(rec))
  return 1
end
if id_status(msg, archived, id) == 'taken' then
  return CONFLICT
end
local parts = {mp_array(rec.n)}
local fields = {}
for i = 0, rec.n - 1 do
  local name = i .. ':' .. id
  parts[#parts + 1] = redis.call('HGET', reports, name) or MP_NIL
  -- In slices: Lua's unpack() refuses more than about 8,000 values.
  fields[#fields + 1] = name
  if #fields == 1000 then
    redis.call('HDEL', reports, unpack(fields))
    redis.call('HDEL', names, unpack(fields))
    fields = {}
  end
end
if #fields > 0 then
  redis.call('HDEL', reports, unpack(fields))
  redis.call('HDEL', names, unpack(fields))
end
local inputs = table.concat(parts)
local message = redis.call('HGET', held, id)
redis.call('HDEL', held, id)
redis.call('HDEL', deps, id)
redis.call('ZREM', archived, id)
if rec.failed and rec.policy == 'cancel' then
  local error = 'DependencyFailedError: ' .. rec.failed .. '; not run (policy "cancel")'
  local now = redis_now_ms()
  redis.call('HSET', msg, id, message .. mp_str(error) .. mp_uint(now) .. MP_NIL .. inputs)
  redis.call('ZADD', archived, now, id)
  announce_final(waiters, ARGV[5], id, 'archived')
  if record_outcome(children, outbox, outbox_at, id,
      mp_array(2) .. mp_str('archived') .. mp_str(error)) then
    return 4
  end
  return 3
end
redis.call('HSET', msg, id, message .. MP_NIL .. mp_uint(0) .. MP_NIL .. inputs)
redis.call('LPUSH', pending, id)
signal_ready(marker)
return 2
