-- set_paused: pause or resume a queue. Resuming wakes workers, since tasks may be waiting.
--
-- KEYS[1] paused  present while paused
-- KEYS[2] marker  zset waking blocked workers
-- ARGV[1] "1" to pause, "0" to resume
-- Returns: 1 when the flag changed, 0 when it already had that value
--@include marker
local paused = KEYS[1]
local marker = KEYS[2]

if ARGV[1] == '1' then
  if redis.call('SET', paused, '1', 'NX') then
    return 1
  end
  return 0
end
local changed = redis.call('DEL', paused)
signal_ready(marker)
return changed
