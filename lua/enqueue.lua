-- enqueue: add one task, ready now or due later. Task-id conflicts, uniqueness locks and the
-- scheduler's tick guard are options of this one script, not copies of it.
--
-- KEYS[1] msg        hash: id -> message
-- KEYS[2] pending    list of ready ids
-- KEYS[3] scheduled  zset: id -> due ms
-- KEYS[4] marker     zset waking blocked workers
-- KEYS[5] archived   zset: id -> archived at ms
-- KEYS[6] result     hash: id -> result
-- KEYS[7] unique     uniqueness lock (untouched unless ARGV[4] > 0)
-- KEYS[8] guard      monotonic tick guard (untouched unless ARGV[5] ~= "")
-- KEYS[9] held       hash: id -> message of a task waiting for its parents (its id is taken)
-- KEYS[10] kready    zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[11] kring     zset: keys to serve, by virtual time
-- KEYS[12] kwait     zset: keys waiting for a token
-- KEYS[13] kstate    hash: per-key counts and state, keyed task -> member
-- ARGV[1] id
-- ARGV[2] encoded message
-- ARGV[3] due ms; 0 means ready now
-- ARGV[4] uniqueness TTL ms; 0 means not unique
-- ARGV[5] guard value (fire time ms) or ""
-- ARGV[6] the task's fairness key (also in its message), or "": a ready keyed task joins its
--   key's lane (lua/includes/keyed.lua); a scheduled one is moved there by the dequeue
-- Returns: 1 when the task is pending, 2 when it is scheduled; the same for a resend (no guard,
--   and the same id and message bytes already stored: nothing is written again)
-- Errors: CONFLICT (id used by a live, held or retained completed task; an archived one is
--         replaced),
--         TICK_TAKEN (guard >= ARGV[5]), DUPLICATE (lock held; nothing written)
--@include codes
--@include marker
--@include id_status
--@include keyed
--@include redis_time
local msg = KEYS[1]
local pending = KEYS[2]
local scheduled = KEYS[3]
local marker = KEYS[4]
local archived = KEYS[5]
local result = KEYS[6]
local unique = KEYS[7]
local guard = KEYS[8]
local held = KEYS[9]
local kready = KEYS[10]
local kring = KEYS[11]
local kwait = KEYS[12]
local kstate = KEYS[13]
local id = ARGV[1]
local due = tonumber(ARGV[3])
local unique_ttl = tonumber(ARGV[4])
local guard_value = ARGV[5]

local status = id_status(msg, archived, id)
-- Not with a guard: there the same message comes from every scheduler instance, and the
-- guard answers a resend (TICK_TAKEN) as it answers the other instances.
if status ~= 'free' and guard_value == '' and is_resend(msg, id, ARGV[2]) then
  if due > 0 then
    return 2
  end
  return 1
end
if status == 'taken' then
  return CONFLICT
end
-- A held task is in no state yet, but its release will store it under this id.
if status == 'free' and redis.call('HEXISTS', held, id) == 1 then
  return CONFLICT
end
if guard_value ~= '' then
  local last = redis.call('GET', guard)
  if last and tonumber(last) >= tonumber(guard_value) then
    return TICK_TAKEN
  end
end
if unique_ttl > 0 and not redis.call('SET', unique, id, 'NX', 'PX', unique_ttl) then
  return DUPLICATE
end
if guard_value ~= '' then
  redis.call('SET', guard, guard_value)
end
if status == 'archived' then
  drop_archived(archived, result, id)
end
redis.call('HSET', msg, id, ARGV[2])
if ARGV[6] ~= '' then
  -- Marks the queue as keyed: its dequeue looks for keyed ids among the tasks made ready.
  redis.call('HSETNX', kstate, 'seq', 0)
end
if due > 0 then
  redis.call('ZADD', scheduled, due, id)
  signal_due(marker, due)
  return 2
end
if ARGV[6] ~= '' then
  keyed_add(kready, kring, kwait, kstate, marker, id, ARGV[6], nil, redis_now_ms())
else
  redis.call('LPUSH', pending, id)
end
signal_ready(marker)
return 1
