--[[
algorithms/token_bucket.lua: the token bucket's part of a lease step.
Mirrors tokenBucketStep in src/algorithms/token-bucket.ts line for line.
Prepended to protocol.lua when the script is loaded (src/store/lua-scripts.ts).

A[a]       capacity (tokens)
A[a+1]     refill per second (tokens)
(A: the key's unpacked arguments, a: where the algorithm's start; alg_load reads them before each key's step)
State: the tokens in the bucket, not counting leased ones (a double).
]]
local ALG_TAG = 116 -- 't'
local ALG_BYTES = 8
local tb_cap, tb_refill
local function alg_load(A, a)
  tb_cap = A[a]
  tb_refill = A[a + 1]
  return a + 2
end

local function floor6(x) return math.floor(x * 1e6) / 1e6 end

local function alg_fresh() return { tokens = tb_cap } end
local function alg_capacity() return tb_cap end
local function alg_advance(s, from, to, cap)
  s.tokens = math.min(cap, s.tokens + math.max(0, to - from) * tb_refill / 1000)
end
local function alg_settle(s) s.tokens = floor6(s.tokens) end
local function alg_available(s) return math.max(0, math.floor(s.tokens)) end
local function alg_take(s, n) s.tokens = floor6(s.tokens - n) end
local function alg_give_back(s, n, cap) s.tokens = math.min(cap, s.tokens + n) end
local function alg_next_permit_ms(s)
  if s.tokens >= 1 then return 0 end
  local perMs = tb_refill / 1000
  if perMs > 0 then return math.ceil((1 - s.tokens) / perMs) end
  return 9007199254740991
end
local function alg_idle_ms(s)
  local perMs = tb_refill / 1000
  if perMs > 0 then return math.ceil((tb_cap - s.tokens) / perMs) end
  return 0
end
local function alg_life(s, now, ttl) return ttl end
local function alg_encode(s) return struct.pack('>d', s.tokens) end
local function alg_decode(raw, pos, updated)
  local tokens = struct.unpack('>d', raw, pos)
  return { tokens = tokens }
end
