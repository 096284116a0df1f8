-- dep_read: a task's recorded final outcome and its dependants, for delivering the one to
-- the others (read in one step, in the parent's slot).
--
-- KEYS[1] dependants list: the task's dependants, msgpack {child queue, child id, index} each
-- KEYS[2] outbox     hash: id -> its final outcome, recorded for its dependants
-- ARGV[1] id
-- Returns: {dependants (possibly empty), outcome entry or nil}
local dependants = KEYS[1]
local outbox = KEYS[2]
local id = ARGV[1]

return {redis.call('LRANGE', dependants, 0, -1), redis.call('HGET', outbox, id)}
