-- Where a task is listed decides its state; a task without a message does not exist.
local function task_state(msg, lease, scheduled, retry, archived, completed, id)
  if redis.call('HEXISTS', msg, id) == 0 then
    return nil
  end
  if redis.call('ZSCORE', lease, id) then
    return 'active'
  end
  if redis.call('ZSCORE', scheduled, id) then
    return 'scheduled'
  end
  if redis.call('ZSCORE', retry, id) then
    return 'retry'
  end
  if redis.call('ZSCORE', archived, id) then
    return 'archived'
  end
  if redis.call('ZSCORE', completed, id) then
    return 'completed'
  end
  return 'pending'
end
