-- Building msgpack by hand, for values the scripts append to messages that Python decodes:
-- cmsgpack would turn binary strings into msgpack str, which Python could not read back.
local function mp_len(n, small, s8, s16, s32)
  if small and n < 32 then
    return string.char(small + n)
  end
  if s8 and n < 256 then
    return string.char(s8, n)
  end
  if n < 65536 then
    return string.char(s16, math.floor(n / 256), n % 256)
  end
  return string.char(s32, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

local function mp_str(s)
  return mp_len(#s, 0xa0, 0xd9, 0xda, 0xdb) .. s
end

local function mp_bin(s)
  return mp_len(#s, nil, 0xc4, 0xc5, 0xc6) .. s
end

local function mp_array(n)
  if n < 16 then
    return string.char(0x90 + n)
  end
  return mp_len(n, nil, nil, 0xdc, 0xdd)
end

-- An integer 0 <= n < 2^53 (epoch ms).
local function mp_uint(n)
  if n < 128 then
    return string.char(n)
  end
  local bytes = {}
  for i = 8, 1, -1 do
    bytes[i] = n % 256
    n = math.floor(n / 256)
  end
  return string.char(0xcf, unpack(bytes))
end

local MP_NIL = string.char(0xc0)
