-- enqueue_batch: add many plain tasks (no uniqueness, no guard) to one queue in one call.
-- The caller sends bounded chunks; each task succeeds or fails on its own.
--
-- KEYS[1] msg        hash: id -> message
-- KEYS[2] pending    list of ready ids
-- KEYS[3] scheduled  zset: id -> due ms
-- KEYS[4] marker     zset waking blocked workers
-- KEYS[5] archived   zset: id -> archived at ms
-- KEYS[6] result     hash: id -> result
-- KEYS[7] held       hash: id -> message of a task waiting for its parents (its id is taken)
-- KEYS[8] kready     zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[9] kring      zset: keys to serve, by virtual time
-- KEYS[10] kwait     zset: keys waiting for a token
-- KEYS[11] kstate    hash: per-key counts and state, keyed task -> member
-- ARGV[4i+1] id, ARGV[4i+2] encoded message, ARGV[4i+3] due ms (0: ready now), ARGV[4i+4] its
--   fairness key or "" (as in enqueue.lua), for each task i
-- Returns: one code per task, in order: 1 pending, 2 scheduled (also for a resend: the same id
--   and message already stored), or CONFLICT (id taken by a live, held or retained completed
--   task)
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
local held = KEYS[7]
local kready = KEYS[8]
local kring = KEYS[9]
local kwait = KEYS[10]
local kstate = KEYS[11]

local codes = {}
local ready = {}
local earliest = nil
local now = redis_now_ms()
local keyed_ready = false
for i = 1, #ARGV, 4 do
  local id = ARGV[i]
  local due = tonumber(ARGV[i + 2])
  if redis.call('HEXISTS', held, id) == 1 then
    codes[#codes + 1] = CONFLICT
  elseif not claim_id(msg, archived, result, id, ARGV[i + 1]) then
    if not is_resend(msg, id, ARGV[i + 1]) then
      codes[#codes + 1] = CONFLICT
    elseif due > 0 then
      codes[#codes + 1] = 2
    else
      codes[#codes + 1] = 1
    end
  elseif due > 0 then
    redis.call('ZADD', scheduled, due, id)
    if not earliest or due < earliest then
      earliest = due
    end
    codes[#codes + 1] = 2
  elseif ARGV[i + 3] ~= '' then
    keyed_add(kready, kring, kwait, kstate, marker, id, ARGV[i + 3], nil, now)
    keyed_ready = true
    codes[#codes + 1] = 1
  else
    ready[#ready + 1] = id
    codes[#codes + 1] = 1
  end
  if ARGV[i + 3] ~= '' and codes[#codes] ~= CONFLICT then
    redis.call('HSETNX', kstate, 'seq', 0)
  end
end
if #ready > 0 then
  redis.call('LPUSH', pending, unpack(ready))
end
if #ready > 0 or keyed_ready then
  signal_ready(marker)
end
if earliest then
  signal_due(marker, earliest)
end
return codes
