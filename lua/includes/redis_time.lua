-- Redis's own clock in ms: every lease is written and judged by this one clock, so skew
-- between worker hosts cannot make a live lease look expired.
local function redis_now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
