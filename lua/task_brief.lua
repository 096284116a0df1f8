-- task_brief: what a workflow's status needs of one task, read in one step: whether it is
-- held (waiting for its parents), its message, and whether it is active, archived or completed.
--
-- KEYS[1] held       hash: id -> held message
-- KEYS[2] msg        hash: id -> message
-- KEYS[3] lease      zset: active id -> lease expiry ms
-- KEYS[4] archived   zset: id -> archived at ms
-- KEYS[5] completed  zset: id -> record expiry ms
-- ARGV[1] id
-- Returns: {held 0/1, message or nil, active 0/1, archived 0/1, completed 0/1}
local held = KEYS[1]
local msg = KEYS[2]
local lease = KEYS[3]
local archived = KEYS[4]
local completed = KEYS[5]
local id = ARGV[1]

local function listed(key)
  if redis.call('ZSCORE', key, id) then
    return 1
  end
  return 0
end

return {redis.call('HEXISTS', held, id), redis.call('HGET', msg, id), listed(lease),
  listed(archived), listed(completed)}
