-- Whether a task id may be (re)used: 'free', 'final' (archived or completed: its old record is
-- replaced, so a dead letter never blocks a new task with that id) or 'live'.
local function id_status(msg, archived, completed, id)
  if redis.call('HEXISTS', msg, id) == 0 then
    return 'free'
  end
  if redis.call('ZSCORE', archived, id) or redis.call('ZSCORE', completed, id) then
    return 'final'
  end
  return 'live'
end

local function drop_final(archived, completed, result, id)
  redis.call('ZREM', archived, id)
  redis.call('ZREM', completed, id)
  redis.call('HDEL', result, id)
end

-- Store a task's message unless a live task holds its id (returns false then); a finished
-- record with that id is replaced. HSETNX first, so a fresh id (the common case) costs one call.
local function claim_id(msg, archived, completed, result, id, message)
  if redis.call('HSETNX', msg, id, message) == 1 then
    return true
  end
  if redis.call('ZSCORE', archived, id) or redis.call('ZSCORE', completed, id) then
    drop_final(archived, completed, result, id)
    redis.call('HSET', msg, id, message)
    return true
  end
  return false
end
