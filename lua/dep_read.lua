-- dep_read: a task's recorded final outcome and its dependants, for delivering the one to
-- the others (read in one step, in the parent's slot).
--
-- KEYS[1] children  hash: id -> msgpack array of {child queue, child id, index}
-- KEYS[2] outbox    hash: id -> its final outcome, recorded for its dependants
-- ARGV[1] id
-- Returns: {dependants or nil, outcome entry or nil}
local children = KEYS[1]
local outbox = KEYS[2]
local id = ARGV[1]

return {redis.call('HGET', children, id), redis.call('HGET', outbox, id)}
