-- dequeue: take up to N ready tasks from one queue and lease them to the caller, each with a
-- new fencing token. Which queue to ask is decided in Python (weighted or strict); a paused
-- queue answers PAUSED. Lease expiry is Redis TIME + the lease duration.
--
-- KEYS[1] pending    list of ready ids
-- KEYS[2] lease      zset: active id -> lease expiry ms
-- KEYS[3] msg        hash: id -> message
-- KEYS[4] paused     present while paused
-- KEYS[5] marker     zset waking blocked workers
-- KEYS[6] lost       hash: id -> times its lease expired
-- KEYS[7] tokens     hash: active id -> fencing token
-- KEYS[8] seq        counter issuing fencing tokens
-- KEYS[9] cancel     hash: id -> cancel request
-- KEYS[10] flow      hash: the queue's rate limit and concurrency cap, and their state
-- KEYS[11] kready    zset: keyed ready tasks (lua/includes/keyed.lua)
-- KEYS[12] kring     zset: keys to serve, by virtual time
-- KEYS[13] kwait     zset: keys waiting for a token of their rate limit
-- KEYS[14] kstate    hash: per-key counts, limits' state, task -> member
-- ARGV[1] lease duration ms
-- ARGV[2] how many tasks at most
-- In a queue that has keyed tasks, the unkeyed tasks (the pending list) take turns with the keys
-- as one more key, and a keyed id found in the pending list (made ready again by forward, retry,
-- recover, requeue, run_now) is first moved to its key's lane.
-- Returns: flat array id1, message1, lost1, token1, cancelled1 (1 when a cancel is recorded:
--   the worker archives it as cancelled without running it), id2, ... (empty: nothing ready);
--   when the queue's flow limits hold ready tasks back, one more element follows the tasks:
--   {reason ('rate' or 'cap', for the queue's limits or, when
--   only keyed tasks are left and no key may start, the keys' limits), ms the caller may sleep before asking again (-1: until woken)}
-- Errors: PAUSED
--@include codes
--@include marker
--@include redis_time
--@include flow
--@include keyed
local pending = KEYS[1]
local lease = KEYS[2]
local msg = KEYS[3]
local paused = KEYS[4]
local marker = KEYS[5]
local lost = KEYS[6]
local tokens = KEYS[7]
local seq = KEYS[8]
local cancel = KEYS[9]
local flow = KEYS[10]
local kready = KEYS[11]
local kring = KEYS[12]
local kwait = KEYS[13]
local kstate = KEYS[14]

if redis.call('EXISTS', paused) == 1 then
  return PAUSED
end
local now = redis_now_ms()
local asked = tonumber(ARGV[2])
local limited = flow_load(flow, lease, now)
local want = asked
if limited then
  want = flow_allow(limited, asked)
end
local until_ms = now + tonumber(ARGV[1])
local out = {}
local started = 0

local function lease_one(id, message)
  started = started + 1
  local token = redis.call('INCR', seq)
  redis.call('ZADD', lease, until_ms, id)
  redis.call('HSET', tokens, id, token)
  out[#out + 1] = id
  out[#out + 1] = message
  out[#out + 1] = tonumber(redis.call('HGET', lost, id) or 0)
  out[#out + 1] = token
  out[#out + 1] = redis.call('HEXISTS', cancel, id)
end

local keyed = redis.call('EXISTS', kstate) == 1 or redis.call('HEXISTS', flow, 'types') == 1
local left
-- Tasks still in the pending list when a keyed dequeue ends (its intake bound was reached).
local unsorted = 0
if not keyed then
  local ids = want > 0 and redis.call('RPOP', pending, want) or {}
  for _, id in ipairs(ids) do
    local message = redis.call('HGET', msg, id)
    -- An id without a message was deleted meanwhile; it is dropped, not leased.
    if message then
      lease_one(id, message)
    end
  end
  left = redis.call('LLEN', pending)
else
  local L = keyed_limits(flow)
  L.flow, L.marker = flow, marker
  if L.lanes then
    L.seen, L.types_seen = {}, {}
  end
  -- The key a task carries in its message (nil: none).
  L.home_of = function(id)
    return keyed_key_of(redis.call('HGET', msg, id))
  end
  if L.types then
    -- The lane a task of a limited type is served in (nil: its own key's, or none).
    L.lane_of = function(id)
      return keyed_type_lane(flow, keyed_type_of(redis.call('HGET', msg, id)), L.types_seen)
    end
  end
  keyed_due(kready, kring, kwait, kstate, marker, now)
  local turn = tonumber(redis.call('HGET', kstate, 'u') or 0)
  local plen = redis.call('LLEN', pending)
  local intake = KEYED_INTAKE
  local ring_dry = false
  -- The virtual clock: the turn of the key served last (a key joining the ring joins there).
  local v = tonumber(redis.call('HGET', kstate, 'v') or 0)
  while started < want do
    local head = not ring_dry and redis.call('ZRANGE', kring, 0, 0, 'WITHSCORES') or {}
    if plen > 0 and intake > 0 and (not head[1] or math.max(turn, v) <= tonumber(head[2])) then
      local id = redis.call('RPOP', pending)
      plen = plen - 1
      intake = intake - 1
      local message = redis.call('HGET', msg, id)
      if message then
        -- Its old place in its key's order if it had one (a retry, a run again); its key
        -- from its message (the key's text may have been dropped while the key was idle).
        local member = redis.call('HGET', kstate, 't:' .. id)
        local key
        if member then
          key = keyed_member_key(member, message)
        else
          key = keyed_key_of(message)
        end
        local moved = false
        if L.types then
          -- A task of a limited type goes to its type's lane, whatever its key.
          local lane, lane_d = keyed_type_lane(flow, keyed_type_of(message), L.types_seen)
          if lane and not (member and string.sub(member, 1, 16) == lane_d) then
            if member then
              keyed_rehome(kready, kring, kwait, kstate, marker, id, member, lane, now)
              moved = true
            else
              key = lane
            end
          end
        end
        if moved then
          -- In its type's lane now; served in its turn.
        elseif member or key then
          keyed_add(kready, kring, kwait, kstate, marker, id, key, member, now)
        else
          lease_one(id, message)
          turn = math.max(turn, v) + 1
        end
      end
    elseif head[1] then
      local id, vt = keyed_next(kready, kring, kwait, kstate, L, now, head)
      if not id then
        ring_dry = true
      else
        if vt ~= v then
          v = vt
          redis.call('HSET', kstate, 'v', tostring(v))
        end
        local message = redis.call('HGET', msg, id)
        if message then
          lease_one(id, message)
        else
          keyed_end(kready, kring, kwait, kstate, marker, id, true, false, now)
        end
      end
    else
      break
    end
  end
  redis.call('HSET', kstate, 'u', tostring(turn))
  left = plen + redis.call('ZCARD', kready)
  unsorted = plen
end

if limited then
  local hold = flow_commit(flow, marker, limited, started, asked, left)
  if hold then
    out[#out + 1] = hold
    return out
  end
end
-- No keys' hold while the pending list still has tasks the intake did not reach (they may be
-- of other keys or types): the wake-up is handed on and the next dequeue sorts on.
if keyed and started < asked and unsorted == 0 then
  local hold = keyed_hold(kready, kring, kwait, kstate, now)
  if hold then
    out[#out + 1] = hold
    return out
  end
end
-- Hand the wake-up on, so another blocked worker takes what is left.
if left > 0 then
  signal_ready(marker)
end
return out
