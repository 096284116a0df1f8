-- run_now: make a scheduled, retry or archived task ready at once.
--
-- KEYS[1] msg        hash: id -> message
-- KEYS[2] pending    list of ready ids
-- KEYS[3] lease      zset: active id -> lease expiry ms
-- KEYS[4] scheduled  zset: id -> due ms
-- KEYS[5] retry      zset: id -> next attempt ms
-- KEYS[6] archived   zset: id -> archived at ms
-- KEYS[7] completed  zset: id -> record expiry ms
-- KEYS[8] marker     zset waking blocked workers
-- KEYS[9] kready     zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[10] kring     zset: keys to serve, by virtual time
-- KEYS[11] kwait     zset: keys waiting for a token
-- KEYS[12] kstate    hash: per-key counts and state, keyed task -> member
-- ARGV[1] id
-- Returns: 1
-- Errors: NOT_FOUND, TASK_ACTIVE, WRONG_STATE (already pending, or completed)
--@include take_task
--@include marker
local msg = KEYS[1]
local pending = KEYS[2]
local lease = KEYS[3]
local scheduled = KEYS[4]
local retry = KEYS[5]
local archived = KEYS[6]
local completed = KEYS[7]
local marker = KEYS[8]
local kready = KEYS[9]
local kring = KEYS[10]
local kwait = KEYS[11]
local kstate = KEYS[12]
local id = ARGV[1]

local state, code = take_task(msg, pending, lease, scheduled, retry, archived, completed, id,
  {['scheduled'] = true, ['retry'] = true, ['archived'] = true},
  kready, kring, kwait, kstate, marker, true)
if not state then
  return code
end
redis.call('LPUSH', pending, id)
signal_ready(marker)
return 1
