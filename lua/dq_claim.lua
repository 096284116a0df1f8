-- dq_claim: decide whether this consumer runs a beanstalkd job, by go-queue dq's dedup key.
-- A go-queue consumer runs a job only when SET <key> NX PX 3600500 succeeds; this does the
-- same first. When the key exists and an rq_sched consumer wrote it, its value says more:
--   rqsdq:run:<lease until ms>:<token>  a consumer is running the job (renews the lease)
--   rqsdq:own:<endpoint/tube/id>        that replica alone may run the job again (retry, repeat)
--   rqsdq:done, or any other value      the job ran (any other value: a Go consumer has it)
-- Time is Redis's own (TIME), so consumers on hosts with skewed clocks agree on leases.
--
-- KEYS[1] dedup      hex MD5 of the wrapped job body
-- ARGV[1] token      unique per claim (hex)
-- ARGV[2] lease ms   how long the hold lasts unless renewed by dq_renew
-- ARGV[3] ttl ms     TTL of a newly set key (3600500, as go-queue's consumer)
-- ARGV[4] reference  this replica: "endpoint/tube/id"
-- Returns: {outcome, busy ms}: outcome 1 set a new key (first sight of this job); 2 this
--   replica's own turn (retry or repeat); 3 took over a hold whose lease lapsed (its consumer
--   died); 0 a duplicate (ran, or owned by another replica); 4 busy: another consumer holds the
--   job for "busy ms" more (0 for every other outcome). Never negative: negative replies are
--   failure codes in every rq_sched script.
-- Errors: none
local key = KEYS[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local hold = 'rqsdq:run:' .. string.format('%d', now + tonumber(ARGV[2])) .. ':' .. ARGV[1]

if redis.call('SET', key, hold, 'NX', 'PX', ARGV[3]) then
  return {1, 0}
end
local held = redis.call('GET', key)
local owner = string.match(held, '^rqsdq:own:(.*)$')
if owner then
  if owner ~= ARGV[4] then
    return {0, 0}
  end
  redis.call('SET', key, hold, 'PX', ARGV[3])
  return {2, 0}
end
local lease = tonumber(string.match(held, '^rqsdq:run:(%d+):'))
if not lease then
  return {0, 0}
end
if lease > now then
  return {4, lease - now}
end
redis.call('SET', key, hold, 'KEEPTTL')
return {3, 0}
