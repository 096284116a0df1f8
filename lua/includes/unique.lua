-- Release a uniqueness lock only if this task still holds it (the TTL may have handed it on).
local function release_unique(lock, id)
  if redis.call('GET', lock) == id then
    redis.call('DEL', lock)
  end
end
