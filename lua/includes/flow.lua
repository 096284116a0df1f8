-- Flow control of one queue, decided inside the dequeue (see docs/flow.md). The queue's `flow`
-- hash holds its limits and their state:
--   interval   rate limit: ms between task starts (period / count); absent: no rate limit
--   burst      rate limit: tasks that may start at once after a pause (>= 1)
--   max_active concurrency cap: most tasks leased at once, across every worker; absent: none
--   tat        rate state: GCRA theoretical arrival time (ms, Redis TIME) of the next start
--   timer      the time (ms) a worker sleeps until to take the next token; while it lies in
--              the future no other worker is given a timer for it (no thundering herd)
--   held       1 while ready tasks wait for a slot of the cap; a script that ends a lease
--              clears it and wakes one worker through the marker
-- The number of running tasks is the size of the lease zset, never a counter of its own: any
-- end of a lease (done, retry, archive, hand-back, recovery after a crash) frees the slot, so
-- no crash point can leak one.
--@include marker

-- Lateness a token tolerates: a worker woken for the next token reaches Redis some ms after
-- its time (reply, event loop, timer), and a strict GCRA would lose that time on every token
-- (measured: 100/s delivered 81/s over 4 workers). With this tolerance the rate holds exactly
-- in steady state; the price is that after a pause up to this much time's worth of tasks more
-- than `burst` may start at once (at most 2% of any 1 s window).
local FLOW_JITTER_MS = 20

-- A worker that is not the timer holder sleeps this long past the holder's time at most, so
-- a holder that died never stalls the queue for longer.
local FLOW_TIMER_GRACE_MS = 2000

-- The queue's limits and state, or nil when it has none (then dequeue writes nothing here).
local function flow_load(flow, lease, now)
  local f = redis.call('HMGET', flow, 'interval', 'burst', 'max_active', 'tat', 'timer')
  local interval = tonumber(f[1])
  local max_active = tonumber(f[3])
  if not interval and not max_active then
    return nil
  end
  local state = {now = now, interval = interval, max_active = max_active,
                 timer = tonumber(f[5]) or 0}
  if interval then
    state.tau = ((tonumber(f[2]) or 1) - 1) * interval + FLOW_JITTER_MS
    state.tat = math.max(tonumber(f[4]) or 0, now)
  end
  if max_active then
    state.active = redis.call('ZCARD', lease)
  end
  return state
end

-- How many of `want` tasks may start now, and which limit (if any) stops more: 'cap', 'rate'.
local function flow_allow(state, want)
  local n = want
  local by = nil
  if state.max_active then
    local free = math.max(0, state.max_active - state.active)
    if free < n then
      n, by = free, 'cap'
    end
  end
  if state.interval then
    local tokens = math.floor((state.now + state.tau - state.tat) / state.interval) + 1
    tokens = math.max(0, tokens)
    if tokens < n then
      n, by = tokens, 'rate'
    end
  end
  return n, by
end

-- Record `started` task starts. Returns nil when nothing holds the queue back (the caller
-- hands the wake-up on), else {reason, wait ms}: 'cap' with -1 (wait for a lease to end: the
-- marker wakes one worker then), or 'rate' with how long this caller should sleep before it
-- asks again (the next token, if it holds the timer; else past the holder's time).
local function flow_commit(flow, marker, state, started, asked, left)
  local now = state.now
  local tat = state.tat
  if state.interval and started > 0 then
    tat = tat + started * state.interval
    redis.call('HSET', flow, 'tat', tostring(tat))
  end
  if left == 0 then
    return nil
  end
  if state.max_active and state.active + started >= state.max_active then
    redis.call('HSET', flow, 'held', 1)
    return {'cap', -1}
  end
  if not state.interval then
    return nil
  end
  local next_at = tat - state.tau
  if next_at <= now then
    return nil
  end
  if state.timer > now then
    -- Another worker sleeps until the next token; this one looks again only if that one
    -- never comes (the marker wakes it sooner when there is something to take).
    return {'rate', math.ceil(state.timer + FLOW_TIMER_GRACE_MS - now)}
  end
  if started >= asked then
    -- This caller has no slot left for the next token: wake one other worker to take the
    -- timer (the one woken asks, and is given it).
    signal_ready(marker)
    return {'rate', math.ceil(next_at + FLOW_TIMER_GRACE_MS - now)}
  end
  redis.call('HSET', flow, 'timer', tostring(next_at))
  return {'rate', math.ceil(next_at - now)}
end

-- A lease ended: if tasks wait for a slot of the cap, wake one worker to take it.
local function flow_freed(flow, marker)
  if redis.call('HDEL', flow, 'held') == 1 then
    signal_ready(marker)
  end
end
