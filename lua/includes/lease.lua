-- A lease is an entry in `lease` (expiry ms) plus its fencing token in `tokens`. Only the
-- holder of the current token may settle, extend or hand back the task; both entries are
-- removed together by whatever ends the lease.
local function holds_lease(tokens, id, token)
  return token ~= '' and redis.call('HGET', tokens, id) == token
end

local function end_lease(lease, tokens, id)
  redis.call('ZREM', lease, id)
  redis.call('HDEL', tokens, id)
end
