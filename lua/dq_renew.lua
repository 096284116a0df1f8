-- dq_renew: extend a consumer's hold on a beanstalkd job it is still running (see dq_claim).
--
-- KEYS[1] dedup      hex MD5 of the wrapped job body
-- ARGV[1] token      the token given to dq_claim
-- ARGV[2] lease ms   new lease length, from now (Redis TIME)
-- Returns: 1 renewed; 0 the hold is no longer this token's (lapsed and taken over, or gone)
-- Errors: none
local key = KEYS[1]
local held = redis.call('GET', key)
if not held or string.match(held, '^rqsdq:run:%d+:(.*)$') ~= ARGV[1] then
  return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local hold = 'rqsdq:run:' .. string.format('%d', now + tonumber(ARGV[2])) .. ':' .. ARGV[1]
redis.call('SET', key, hold, 'KEEPTTL')
return 1
