-- Bump a total and a daily counter; daily counters expire on their own.
local function count(total, day, day_expire_at, n)
  redis.call('INCRBY', total, n)
  redis.call('INCRBY', day, n)
  redis.call('EXPIREAT', day, day_expire_at)
end
