-- claim_tick: claim a scheduler tick without enqueueing anything (its entry is paused), so that
-- exactly one scheduler process records the skipped tick, and a scheduler that starts later
-- resumes after it, as it would after an enqueued tick.
--
-- KEYS[1] guard  monotonic tick guard of the entry (the one enqueue's guard option moves)
-- ARGV[1] fire time ms
-- Returns: 1 when claimed
-- Errors: TICK_TAKEN (guard already at or past ARGV[1]; nothing changed)
--@include codes
local guard = KEYS[1]

local last = redis.call('GET', guard)
if last and tonumber(last) >= tonumber(ARGV[1]) then
  return TICK_TAKEN
end
redis.call('SET', guard, ARGV[1])
return 1
