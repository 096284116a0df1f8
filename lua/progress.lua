-- progress: a running handler reports its progress. Only the holder of the task's current lease
-- token may, so a run that lost its lease cannot overwrite the progress of the run that
-- replaced it. Settling scripts (done, retry, archive_active, archive, delete) clear the entry.
--
-- KEYS[1] tokens    hash: active id -> fencing token
-- KEYS[2] progress  hash: id -> encoded progress (value, message, reported at ms)
-- ARGV[1] id
-- ARGV[2] lease token
-- ARGV[3] encoded progress
-- Returns: 1 written
-- Errors: NOT_ACTIVE (lease gone or stale token; nothing written)
--@include codes
--@include lease
local tokens = KEYS[1]
local progress = KEYS[2]
local id = ARGV[1]

if not holds_lease(tokens, id, ARGV[2]) then
  return NOT_ACTIVE
end
redis.call('HSET', progress, id, ARGV[3])
return 1
