--[[
algorithms/gcra.lua: GCRA's part of a lease step (the leaky bucket as a meter).
Mirrors gcraStep in src/algorithms/gcra.ts line for line (read the notes there).
Prepended to protocol.lua when the script is loaded (src/store/lua-scripts.ts).

A[a]       limit: the burst (permits)
A[a+1]     rate: permits per second (limit / windowSec); emission interval 1e6 / rate µs
(A: the key's unpacked arguments, a: where the algorithm's start; alg_load reads them before each key's step)
State: the theoretical arrival time, store µs (a double holding a whole number).
]]
local ALG_TAG = 103 -- 'g'
local ALG_BYTES = 8
local g_limit, g_interval
local function alg_load(A, a)
  g_limit = A[a]
  g_interval = 1e6 / A[a + 1]
  return a + 2
end

local function g_floor(s, cap) return s.at + (g_limit - cap) * g_interval end

local function alg_fresh() return { tat = 0, at = 0 } end
local function alg_capacity() return g_limit end
local function alg_advance(s, from, to, cap)
  s.at = math.max(s.at, to * 1000)
  s.tat = math.max(s.tat, g_floor(s, cap))
end
local function alg_settle(s) s.tat = math.ceil(s.tat) end
local function alg_available(s)
  return math.max(0, math.floor((s.at + g_limit * g_interval - math.max(s.tat, s.at)) / g_interval))
end
local function alg_take(s, n) s.tat = math.ceil(math.max(s.tat, s.at) + n * g_interval) end
local function alg_give_back(s, n, cap) s.tat = math.max(s.tat - n * g_interval, g_floor(s, cap)) end
local function alg_next_permit_ms(s)
  local wait = s.tat - (g_limit - 1) * g_interval - s.at
  if wait > 0 then return math.ceil(wait / 1000) end
  return 0
end
local function alg_idle_ms(s) return math.max(0, math.ceil((s.tat - s.at) / 1000)) end
local function alg_life(s, now, ttl) return ttl end
local function alg_encode(s) return struct.pack('>d', s.tat) end
local function alg_decode(raw, pos, updated)
  local tat = struct.unpack('>d', raw, pos)
  return { tat = tat, at = updated * 1000 }
end
