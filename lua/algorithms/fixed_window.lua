--[[
algorithms/fixed_window.lua: the fixed window's part of a lease step.
Mirrors fixedWindowStep in src/algorithms/fixed-window.ts line for line (read the
notes there). Prepended to protocol.lua when the script is loaded.

A[a]       limit: permits per window
A[a+1]     window length, ms (windows are aligned to Redis TIME: multiples since the epoch)
(A: the key's unpacked arguments, a: where the algorithm's start; alg_load reads them before each key's step)
State: the current window's start (ms, a double), its count and its length (int32 each).
]]
local ALG_TAG = 102 -- 'f'
local ALG_BYTES = 16
local w_limit, w_len
local function alg_load(A, a)
  w_limit = A[a]
  w_len = A[a + 1]
  return a + 2
end

local function alg_fresh() return { start = -math.huge, count = 0, len = 0, at = 0 } end
local function alg_capacity() return w_limit end
-- Counting, not refilling: leased permits are in `count`, so `cap` holds by itself.
local function alg_advance(s, from, to, cap)
  s.at = math.max(s.at, to)
  local ws = math.floor(s.at / w_len) * w_len
  if s.len ~= w_len then
    -- The policy's window changed length: the window containing now, aligned to the new
    -- length, still counts everything counted so far.
    s.len = w_len
    s.start = ws
  elseif ws > s.start then
    s.start = ws
    s.count = 0
  end
end
local function alg_settle(s) end
local function alg_available(s) return math.max(0, math.floor(w_limit - s.count)) end
local function alg_take(s, n) s.count = s.count + n end
-- Only permits counted in this window come back: an earlier window's are gone with it.
local function alg_give_back(s, n, cap, grantedAt)
  if grantedAt >= s.start then s.count = math.max(0, s.count - n) end
end
local function alg_next_permit_ms(s)
  if w_limit - s.count >= 1 then return 0 end
  return math.max(1, math.ceil(s.start + w_len - s.at))
end
local function alg_idle_ms(s)
  if s.count > 0 then return math.max(0, math.ceil(s.start + w_len - s.at)) end
  return 0
end
local function alg_life(s, now, ttl) return math.max(0, math.min(ttl, s.start + w_len - now)) end
local function alg_encode(s) return struct.pack('>di4i4', s.start, s.count, s.len) end
local function alg_decode(raw, pos, updated)
  local start, count, len = struct.unpack('>di4i4', raw, pos)
  return { start = start, count = count, len = len, at = updated }
end
