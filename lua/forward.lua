-- forward: move scheduled and retry tasks that are due to pending (a bounded batch), and
-- announce when the next one is due.
--
-- KEYS[1] scheduled  zset: id -> due ms
-- KEYS[2] retry      zset: id -> next attempt ms
-- KEYS[3] pending    list of ready ids
-- KEYS[4] marker     zset waking blocked workers
-- ARGV[1] now ms
-- ARGV[2] most tasks moved in this call
-- Returns: {moved, next due ms or -1}; moved == ARGV[2] means call again
--@include marker
local scheduled = KEYS[1]
local retry = KEYS[2]
local pending = KEYS[3]
local marker = KEYS[4]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])

local function move_due(source, room)
  if room <= 0 then
    return 0
  end
  local ids = redis.call('ZRANGE', source, '-inf', now, 'BYSCORE', 'LIMIT', 0, room)
  if #ids > 0 then
    redis.call('ZREM', source, unpack(ids))
    redis.call('LPUSH', pending, unpack(ids))
  end
  return #ids
end

local function first_due(source)
  local head = redis.call('ZRANGE', source, 0, 0, 'WITHSCORES')
  return head[2] and tonumber(head[2])
end

local moved = move_due(scheduled, limit)
moved = moved + move_due(retry, limit - moved)
if moved > 0 then
  signal_ready(marker)
end
local next_due = first_due(scheduled)
local next_retry = first_due(retry)
if next_retry and (not next_due or next_retry < next_due) then
  next_due = next_retry
end
if next_due then
  signal_due(marker, next_due)
  return {moved, next_due}
end
return {moved, -1}
