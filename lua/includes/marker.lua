-- The marker sorted set wakes blocked workers (BZPOPMIN): member "r" (score 0) says tasks are
-- ready; member "d" says when the next scheduled or retry task is due.
local function signal_ready(marker)
  redis.call('ZADD', marker, 0, 'r')
end

-- Only ever lowers the announced due time, so the earliest due task is never missed.
local function signal_due(marker, due)
  redis.call('ZADD', marker, 'LT', due, 'd')
end
