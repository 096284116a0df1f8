-- dep_ack: a task's final outcome was delivered to every dependant: drop the record and the
-- list of dependants (in the parent's slot). Run only after every dep_report succeeded.
--
-- KEYS[1] children   hash: id -> its dependants
-- KEYS[2] outbox     hash: id -> its final outcome, recorded for its dependants
-- KEYS[3] outbox_at  zset: id -> when that outcome was recorded (ms)
-- KEYS[4] dependants list: the task's dependants
-- ARGV[1] id
-- Returns: 1
local children = KEYS[1]
local outbox = KEYS[2]
local outbox_at = KEYS[3]
local dependants = KEYS[4]
local id = ARGV[1]

redis.call('HDEL', children, id)
redis.call('HDEL', outbox, id)
redis.call('ZREM', outbox_at, id)
redis.call('DEL', dependants)
return 1
