-- dq_handover: end a consumer's hold on a beanstalkd job (see dq_claim), leaving the key in
-- the state that says what happens next: "rqsdq:done" after success, "rqsdq:own:<reference>"
-- when that replica alone will run the job again (retry, repeat, kicked from buried).
--
-- KEYS[1] dedup      hex MD5 of the wrapped job body
-- ARGV[1] token      the token given to dq_claim
-- ARGV[2] value      the key's next value
-- ARGV[3] ttl ms     TTL for that value; 0 keeps the key's current TTL
-- Returns: 1 handed over; 0 the hold is no longer this token's (nothing changed)
-- Errors: none
local key = KEYS[1]
local held = redis.call('GET', key)
if not held or string.match(held, '^rqsdq:run:%d+:(.*)$') ~= ARGV[1] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('SET', key, ARGV[2], 'KEEPTTL')
else
  redis.call('SET', key, ARGV[2], 'PX', ARGV[3])
end
return 1
