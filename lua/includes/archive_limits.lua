-- The queue's archive limits in force: those the queue's workers stored (trim.lua writes
-- them), else the caller's defaults. Returns max_size, max_age_ms.
local function archive_limits(limits, default_size, default_age_ms)
  local stored = redis.call('HMGET', limits, 'max_size', 'max_age_ms')
  return tonumber(stored[1]) or tonumber(default_size), tonumber(stored[2]) or tonumber(default_age_ms)
end
