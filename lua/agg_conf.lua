-- agg_conf: store the aggregation limits of a queue's aggregators, which enqueue_grouped uses
-- (the workers decide, as they decide archive limits).
--
-- KEYS[1] conf  hash: grace_ms, max_delay_ms, max_size
-- ARGV[1] grace ms, ARGV[2] max delay ms (0: none), ARGV[3] max size (0: none)
-- Returns: 1
local conf = KEYS[1]
redis.call('HSET', conf, 'grace_ms', ARGV[1], 'max_delay_ms', ARGV[2], 'max_size', ARGV[3])
return 1
