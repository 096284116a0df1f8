-- Whether a task id may be (re)used: 'free'; 'archived' (a dead letter never blocks a new task
-- with that id: its record is replaced); 'taken' (live, or completed and still retained: an
-- explicit id stays idempotent as long as its record is kept).
local function id_status(msg, archived, id)
  if redis.call('HEXISTS', msg, id) == 0 then
    return 'free'
  end
  if redis.call('ZSCORE', archived, id) then
    return 'archived'
  end
  return 'taken'
end

-- The same message is stored under this id already: the call is a resend of an enqueue that
-- was written (redis-py retries a script after a timeout), so it succeeds without a change.
local function is_resend(msg, id, message)
  return redis.call('HGET', msg, id) == message
end

local function drop_archived(archived, result, id)
  redis.call('ZREM', archived, id)
  redis.call('HDEL', result, id)
end

-- Store a task's message unless its id is taken (returns false then); an archived record
-- with that id is replaced. HSETNX first, so a fresh id (the common case) costs one call.
local function claim_id(msg, archived, result, id, message)
  if redis.call('HSETNX', msg, id, message) == 1 then
    return true
  end
  if redis.call('ZSCORE', archived, id) then
    drop_archived(archived, result, id)
    redis.call('HSET', msg, id, message)
    return true
  end
  return false
end
