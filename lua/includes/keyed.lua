-- Keyed tasks: fairness across keys and per-key limits inside one queue (docs/flow.md, "Per-key
-- fairness"). A queue's keyed ready tasks live in four fixed keys, so every script names them
-- in KEYS whatever the number of keys:
--   kready  zset, every score 0: one member per ready keyed task, "<digest><seq><id>" (digest:
--           16 hex chars of SHA1(key); seq: 12 digits), so ZRANGEBYLEX on a digest gives the
--           key's oldest task in O(log n)
--   kring   zset: digest -> virtual time of its next service, for keys with ready tasks that
--           are not parked; the head is served next (round robin across keys)
--   kwait   zset: digest -> ms (Redis TIME) when a key parked by its rate limit may go on
--   kstate  hash:
--             t:<id>  the task's kready member while it lives (keeps its place in its key's
--                     order when a retry, recovery or hand-back makes it ready again)
--             h:<id>  1 while the task waits for a retry and keeps its key's slot
--             n:<d>   ready tasks of key <d>; a:<d> its running tasks (plus retry holds)
--             r:<d>   its GCRA tat; p:<d> 'c' parked at its cap, 'w' parked in kwait
--             k:<d>   the key's text (for the Inspector)
--             seq     counter ordering the tasks; v virtual clock; u the unkeyed tasks' turn;
--             kt      the kwait time a worker was told to sleep until (no thundering herd)
-- A key at its concurrency cap or out of tokens leaves the ring (parked), so a dequeue visits
-- only keys that can be served; a lease end puts a capped key back, the dequeue moves a key
-- whose token time passed from kwait back. A key with no ready and no running task and no
-- rate debt keeps no state at all.
--@include marker
--@include flow

local KEYED_VISITS = 64
local KEYED_INTAKE = 200

local function keyed_digest(key)
  return string.sub(redis.sha1hex(key), 1, 16)
end

-- Bytes taken by a msgpack header at `pos` beyond its first byte, and how many values follow
-- inside it (array items, map keys and values); strings, binaries and extensions count their
-- data as header. Walking the headers (not decoding) is what lets the key be read from any
-- message: Redis's cmsgpack refuses msgpack's bin type, which every bytes payload uses.
local function mp_header(s, pos)
  local b = string.byte(s, pos)
  if b <= 0x7f or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3 then
    return 0, 0
  elseif b >= 0xa0 and b <= 0xbf then
    return b - 0xa0, 0
  elseif b >= 0x90 and b <= 0x9f then
    return 0, b - 0x90
  elseif b >= 0x80 and b <= 0x8f then
    return 0, 2 * (b - 0x80)
  end
  local function u(n)
    local v = 0
    for i = 1, n do
      v = v * 256 + string.byte(s, pos + i)
    end
    return v
  end
  local fixed = {[0xca] = 4, [0xcb] = 8, [0xcc] = 1, [0xcd] = 2, [0xce] = 4, [0xcf] = 8,
                 [0xd0] = 1, [0xd1] = 2, [0xd2] = 4, [0xd3] = 8, [0xd4] = 2, [0xd5] = 3,
                 [0xd6] = 5, [0xd7] = 9, [0xd8] = 17}
  if fixed[b] then
    return fixed[b], 0
  elseif b == 0xc4 or b == 0xd9 then
    return 1 + u(1), 0
  elseif b == 0xc5 or b == 0xda then
    return 2 + u(2), 0
  elseif b == 0xc6 or b == 0xdb then
    return 4 + u(4), 0
  elseif b == 0xc7 or b == 0xc8 or b == 0xc9 then
    local n = ({[0xc7] = 1, [0xc8] = 2, [0xc9] = 4})[b]
    return n + 1 + u(n), 0
  elseif b == 0xdc then
    return 2, u(2)
  elseif b == 0xdd then
    return 4, u(4)
  elseif b == 0xde then
    return 2, 2 * u(2)
  elseif b == 0xdf then
    return 4, 2 * u(4)
  end
  error('not msgpack')
end

-- The fairness key a message carries (its 16th field, see rq_sched/message.py), or nil. Only a
-- message of 16 fields or more (an array16 header, 0xdc) can carry one; the 15 fields before
-- it are stepped over header by header, in a loop (no recursion, whatever the nesting).
local function keyed_key_of(message)
  if not message or string.byte(message, 1) ~= 0xdc then
    return nil
  end
  local ok, key = pcall(function()
    local pos = 4
    for _ = 1, 15 do
      local left = 1
      while left > 0 do
        local skip, inside = mp_header(message, pos)
        pos = pos + 1 + skip
        left = left - 1 + inside
      end
    end
    local b = string.byte(message, pos)
    local skip = mp_header(message, pos)
    local len = ({[0xd9] = 1, [0xda] = 2, [0xdb] = 4})[b] or 0
    if not (b >= 0xa0 and b <= 0xbf) and len == 0 then
      return nil
    end
    return string.sub(message, pos + 1 + len, pos + skip)
  end)
  if ok and key and key ~= '' then
    return key
  end
  return nil
end

-- A task's type (the message's 2nd field), or nil for a message that is not one.
local function keyed_type_of(message)
  if not message then
    return nil
  end
  local ok, t = pcall(function()
    local b = string.byte(message, 1)
    local pos
    if b >= 0x92 and b <= 0x9f then
      pos = 2
    elseif b == 0xdc then
      pos = 4
    else
      return nil
    end
    local skip = mp_header(message, pos)
    pos = pos + 1 + skip
    b = string.byte(message, pos)
    local len = ({[0xd9] = 1, [0xda] = 2, [0xdb] = 4})[b] or 0
    if not (b >= 0xa0 and b <= 0xbf) and len == 0 then
      return nil
    end
    skip = mp_header(message, pos)
    return string.sub(message, pos + 1 + len, pos + skip)
  end)
  if ok then
    return t
  end
  return nil
end

-- Per-task-type limits (docs/flow.md, "Per-task-type limits"): a limited type is served in a
-- lane of its own, the lane of an implicit key that no user key can be (user keys refuse
-- control characters), with the type's limits instead of the per-key defaults.
local KEYED_TYPE_PREFIX = '\0type\0'

-- The lane a task of `task_type` must be served in (the implicit key's text and digest), when
-- the queue's flow hash limits that type; else nil.
-- `memo` (optional) remembers the answers within one script call.
local function keyed_type_lane(flow, task_type, memo)
  if not task_type then
    return nil
  end
  local known = memo and memo[task_type]
  if known == nil then
    known = false
    if redis.call('HGET', flow, 'T:' .. task_type) then
      local key = KEYED_TYPE_PREFIX .. task_type
      known = {key, string.sub(redis.sha1hex(key), 1, 16)}
    end
    if memo then
      memo[task_type] = known
    end
  end
  if not known then
    return nil
  end
  return known[1], known[2]
end

-- The text of the lane a ready task's old place (`member`) is in: its type's lane (whether the
-- type is limited still or not), else its key from its message. Recorded as the lane's text
-- when the lane had gone idle meanwhile (so a type's lane never takes a user key's name).
local function keyed_member_key(member, message)
  local t = keyed_type_of(message)
  if t then
    local lane = KEYED_TYPE_PREFIX .. t
    if keyed_digest(lane) == string.sub(member, 1, 16) then
      return lane
    end
  end
  return keyed_key_of(message)
end

-- Whether `d` is the lane of a task type (limited now or once), by the lane's text.
local function keyed_is_lane(kstate, d)
  local text = redis.call('HGET', kstate, 'k:' .. d)
  return text and string.sub(text, 1, #KEYED_TYPE_PREFIX) == KEYED_TYPE_PREFIX
end

-- The limits of lane `d` when it has its own (a limited type's or a key's:
-- "interval|burst|cap|rate|weight" in the flow hash's D:<d>), else the per-key defaults `L`
-- (`L.seen`, when set, remembers them within one script call).
local function keyed_lane_limits(flow, d, L)
  local known = L.seen and L.seen[d]
  if known ~= nil then
    return known
  end
  local spec = redis.call('HGET', flow, 'D:' .. d)
  local T = L
  if spec then
    local interval, burst, cap, _, weight = string.match(spec,
      '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|?([^|]*)')
    T = {cap = tonumber(cap), interval = tonumber(interval), hold = L.hold,
         weight = tonumber(weight) or 1}
    if T.interval then
      T.tau = ((tonumber(burst) or 1) - 1) * T.interval + FLOW_JITTER_MS
    end
  end
  if L.seen then
    L.seen[d] = T
  end
  return T
end

local function keyed_count(kstate, field, by)
  local n = redis.call('HINCRBY', kstate, field, by)
  if n <= 0 then
    redis.call('HDEL', kstate, field)
    return 0
  end
  return n
end

-- Key <d> may be served again (a task became ready, or, with `freed`, one of its slots freed):
-- put it in the ring unless it is there, waits for a token, or (without `freed`) sits at its cap.
local function keyed_wake(kready, kring, kwait, kstate, marker, d, freed, now)
  local parked = redis.call('HGET', kstate, 'p:' .. d)
  if parked == 'w' or (parked == 'c' and not freed) then
    return
  end
  local n = tonumber(redis.call('HGET', kstate, 'n:' .. d) or 0)
  if n == 0 then
    redis.call('HDEL', kstate, 'p:' .. d)
    redis.call('ZREM', kring, d)
    if not redis.call('HGET', kstate, 'a:' .. d) then
      -- Idle key: drop its state, unless its rate still has debt: then kwait drops it when
      -- the debt is paid (an entry without p:<d>).
      local tat = tonumber(redis.call('HGET', kstate, 'r:' .. d) or 0)
      if tat > now then
        redis.call('ZADD', kwait, tat, d)
      else
        redis.call('HDEL', kstate, 'r:' .. d, 'k:' .. d)
      end
    end
    return
  end
  redis.call('HDEL', kstate, 'p:' .. d)
  if not redis.call('ZSCORE', kring, d) then
    redis.call('ZADD', kring, tonumber(redis.call('HGET', kstate, 'v') or 0), d)
    signal_ready(marker)
  end
end

-- Make task `id` ready in its key's lane: at its old place (`member`) or at the end of `key`'s.
local function keyed_add(kready, kring, kwait, kstate, marker, id, key, member, now)
  if not member then
    local d = keyed_digest(key)
    local s = redis.call('HINCRBY', kstate, 'seq', 1)
    member = d .. string.format('%012d', s) .. id
    redis.call('HSET', kstate, 't:' .. id, member, 'k:' .. d, key)
  end
  local d = string.sub(member, 1, 16)
  redis.call('ZADD', kready, 0, member)
  keyed_count(kstate, 'n:' .. d, 1)
  local freed = false
  if redis.call('HDEL', kstate, 'h:' .. id) == 1 then
    -- It kept its key's slot while it waited for the retry; it is ready now, so it gives the
    -- slot back (and takes it again when it starts, ahead of its key's later tasks).
    keyed_count(kstate, 'a:' .. d, -1)
    freed = true
  end
  if key and not redis.call('HGET', kstate, 'k:' .. d) then
    redis.call('HSET', kstate, 'k:' .. d, key)
  end
  keyed_wake(kready, kring, kwait, kstate, marker, d, freed, now)
end

-- A lease of keyed task `id` ended and the task is ready again (a retry due now, a recovery, a
-- hand-back): it goes straight back to its place in its key's lane, ahead of the key's later
-- tasks (through the pending list, a later task of the key could start first). Returns false
-- for a task that is not keyed (the caller pushes it to the pending list).
local function keyed_back(kready, kring, kwait, kstate, marker, id, now)
  local member = redis.call('HGET', kstate, 't:' .. id)
  if not member then
    return false
  end
  local d = string.sub(member, 1, 16)
  keyed_count(kstate, 'a:' .. d, -1)
  redis.call('ZADD', kready, 0, member)
  keyed_count(kstate, 'n:' .. d, 1)
  keyed_wake(kready, kring, kwait, kstate, marker, d, true, now)
  return true
end

-- A lease of task `id` ended. `final`: it is done or archived (forget it); `hold`: it waits
-- for a retry and keeps its key's slot (key_hold_on_retry).
local function keyed_end(kready, kring, kwait, kstate, marker, id, final, hold, now)
  local member = redis.call('HGET', kstate, 't:' .. id)
  if not member then
    return
  end
  if final then
    redis.call('HDEL', kstate, 't:' .. id)
  end
  if hold then
    redis.call('HSET', kstate, 'h:' .. id, 1)
    return
  end
  local d = string.sub(member, 1, 16)
  keyed_count(kstate, 'a:' .. d, -1)
  keyed_wake(kready, kring, kwait, kstate, marker, d, true, now)
end

-- Task `id` leaves the queue (deleted, archived) or is about to be made ready by the caller
-- (`keep`) from a state other than active. Returns true if it was a keyed ready task (then it
-- is out of kready; else the caller takes it from wherever it is).
local function keyed_take(kready, kring, kwait, kstate, marker, id, keep, now)
  local member = redis.call('HGET', kstate, 't:' .. id)
  if not member then
    return false
  end
  local d = string.sub(member, 1, 16)
  local was_ready = redis.call('ZREM', kready, member) == 1
  if was_ready then
    keyed_count(kstate, 'n:' .. d, -1)
  end
  if not keep then
    redis.call('HDEL', kstate, 't:' .. id)
    if redis.call('HDEL', kstate, 'h:' .. id) == 1 then
      keyed_count(kstate, 'a:' .. d, -1)
      keyed_wake(kready, kring, kwait, kstate, marker, d, true, now)
      return was_ready
    end
  end
  if was_ready then
    keyed_wake(kready, kring, kwait, kstate, marker, d, false, now)
  end
  return was_ready
end

-- The per-key limits stored with the queue's flow limits, or nil for none.
local function keyed_limits(flow)
  local f = redis.call('HMGET', flow, 'key_max_active', 'key_interval', 'key_burst', 'key_hold',
                       'types', 'key_limits')
  local L = {cap = tonumber(f[1]), interval = tonumber(f[2]), hold = f[4] == '1', weight = 1,
             types = tonumber(f[5] or 0) > 0}
  -- Lanes with limits of their own (types', keys'): looked up per lane visited.
  L.lanes = L.types or tonumber(f[6] or 0) > 0
  if L.interval then
    L.tau = ((tonumber(f[3]) or 1) - 1) * L.interval + FLOW_JITTER_MS
  end
  return L
end

-- Move keys whose token time passed from kwait back to the ring (a bounded batch).
local function keyed_due(kready, kring, kwait, kstate, marker, now)
  local due = redis.call('ZRANGE', kwait, '-inf', now, 'BYSCORE', 'LIMIT', 0, KEYED_VISITS)
  for _, d in ipairs(due) do
    redis.call('ZREM', kwait, d)
    if redis.call('HDEL', kstate, 'p:' .. d) == 1 then
      keyed_wake(kready, kring, kwait, kstate, marker, d, true, now)
    elseif not redis.call('HGET', kstate, 'n:' .. d) and not redis.call('HGET', kstate, 'a:' .. d) then
      redis.call('HDEL', kstate, 'r:' .. d, 'k:' .. d)
    end
  end
end

-- Task `id` (ready, at `member`) leaves its lane for the lane of its limited type (`lane`,
-- from keyed_type_lane): at the end of that lane, with any retry hold of its old key given back.
local function keyed_rehome(kready, kring, kwait, kstate, marker, id, member, lane, now)
  local d = string.sub(member, 1, 16)
  if redis.call('ZREM', kready, member) == 1 then
    keyed_count(kstate, 'n:' .. d, -1)
  end
  local freed = redis.call('HDEL', kstate, 'h:' .. id) == 1
  if freed then
    keyed_count(kstate, 'a:' .. d, -1)
  end
  keyed_wake(kready, kring, kwait, kstate, marker, d, freed, now)
  keyed_add(kready, kring, kwait, kstate, marker, id, lane, nil, now)
end

-- The next keyed task to start by the ring's order and the lane's limits, taken out of
-- kready and counted as running, with the virtual time of its key's turn; nil when no key can
-- be served now. `head` is the ring's head as the caller read it (ZRANGE .. WITHSCORES).
-- With per-task-type limits (L.types), a lane's limits may be its type's, and a task whose
-- type is limited is moved to its type's lane (`L.lane_of(id)` names it) instead of started.
-- Under per-key limits, a type's lane left from earlier type limits is no key: its keyed
-- tasks go back to their key's lane (`L.home_of(id)` names it), the others start freely.
local function keyed_next(kready, kring, kwait, kstate, L, now, head)
  for _ = 1, KEYED_VISITS do
    head = head or redis.call('ZRANGE', kring, 0, 0, 'WITHSCORES')
    if not head[1] then
      return nil
    end
    local d, vt = head[1], tonumber(head[2])
    head = nil
    local member = redis.call('ZRANGEBYLEX', kready, '[' .. d, '[' .. d .. '\255', 'LIMIT', 0, 1)[1]
    local M = L
    local lane, lane_d = nil, nil
    if L.lanes and member then
      M = keyed_lane_limits(L.flow, d, L)
      if L.types and M == L then
        -- A user key's lane (a type's lane holds only tasks of its type).
        lane, lane_d = L.lane_of(string.sub(member, 29))
      end
    end
    if M == L and (L.cap or L.interval) and member and keyed_is_lane(kstate, d) then
      -- The lane of a type no longer limited, under per-key limits (which would make it one
      -- more key): its keyed tasks go back to their own key's lane, so their key's cap
      -- holds; the others start with no per-key limit.
      local key = L.home_of(string.sub(member, 29))
      if key then
        lane, lane_d = key, keyed_digest(key)
      else
        M = {hold = false, weight = 1}
      end
    end
    local counts = redis.call('HMGET', kstate, 'a:' .. d, 'r:' .. d)
    local running = tonumber(counts[1] or 0)
    local tat = nil
    if M.interval then
      tat = math.max(tonumber(counts[2] or 0), now)
      if tat > now + M.tau + M.interval then
        -- A debt these limits could not have left (after a start at or before now, tat is at
        -- most now + tau + interval): the old limits' (set_flow does not reach a key whose
        -- tasks all run). The key starts afresh.
        tat = now
      end
    end
    if not member then
      redis.call('ZREM', kring, d)
      redis.call('HDEL', kstate, 'n:' .. d)
    elseif lane and lane_d ~= d then
      keyed_rehome(kready, kring, kwait, kstate, L.marker, string.sub(member, 29), member, lane, now)
    elseif M.cap and running >= M.cap then
      redis.call('ZREM', kring, d)
      redis.call('HSET', kstate, 'p:' .. d, 'c')
    elseif tat and tat - M.tau > now then
      redis.call('ZREM', kring, d)
      redis.call('HSET', kstate, 'p:' .. d, 'w')
      redis.call('ZADD', kwait, tat - M.tau, d)
    else
      redis.call('ZREM', kready, member)
      redis.call('HINCRBY', kstate, 'a:' .. d, 1)
      if tat then
        redis.call('HSET', kstate, 'r:' .. d, tostring(tat + M.interval))
      end
      if keyed_count(kstate, 'n:' .. d, -1) > 0 then
        -- A lane of weight w takes w turns per turn of a weight-1 lane.
        redis.call('ZADD', kring, vt + 1 / M.weight, d)
      else
        redis.call('ZREM', kring, d)
      end
      return string.sub(member, 29), vt
    end
  end
  return nil
end

-- Why keyed tasks are left behind when none could be served: {'rate', ms} until the first key
-- waiting for a token (one worker is given that time, the others sleep past it), or
-- {'cap', -1} (a lease end wakes a worker); nil when there are none.
local function keyed_hold(kready, kring, kwait, kstate, now)
  if redis.call('ZCARD', kready) == 0 or redis.call('ZCARD', kring) > 0 then
    return nil
  end
  local first = redis.call('ZRANGE', kwait, 0, 0, 'WITHSCORES')
  if first[1] then
    local at = tonumber(first[2])
    local timer = tonumber(redis.call('HGET', kstate, 'kt') or 0)
    if timer > now and timer <= at then
      return {'rate', math.ceil(at + FLOW_TIMER_GRACE_MS - now)}
    end
    redis.call('HSET', kstate, 'kt', tostring(at))
    return {'rate', math.max(1, math.ceil(at - now))}
  end
  return {'cap', -1}
end
