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
-- ARGV[3i+1] id, ARGV[3i+2] encoded message, ARGV[3i+3] due ms (0: ready now), for each task i
-- Returns: one code per task, in order: 1 pending, 2 scheduled (also for a resend: the same id
--   and message already stored), or CONFLICT (id taken by a live, held or retained completed
--   task)
--@include codes
--@include marker
--@include id_status
local msg = KEYS[1]
local pending = KEYS[2]
local scheduled = KEYS[3]
local marker = KEYS[4]
local archived = KEYS[5]
local result = KEYS[6]
local held = KEYS[7]

local codes = {}
local ready = {}
local earliest = nil
for i = 1, #ARGV, 3 do
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
  else
    ready[#ready + 1] = id
    codes[#codes + 1] = 1
  end
end
if #ready > 0 then
  redis.call('LPUSH', pending, unpack(ready))
  signal_ready(marker)
end
if earliest then
  signal_due(marker, earliest)
end
return codes
