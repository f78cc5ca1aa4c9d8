--[[
algorithms/sliding_window.lua: the sliding window counter's part of a lease step.
Mirrors slidingWindowStep in src/algorithms/sliding-window.ts line for line (read
the notes there). Prepended to protocol.lua when the script is loaded.

A[a]       limit: permits per window
A[a+1]     window length, ms (windows are aligned to Redis TIME: multiples since the epoch)
(A: the key's unpacked arguments, a: where the algorithm's start; alg_load reads them before each key's step)
State: the current window's start (ms, a double), its count, the previous
window's count and the window's length (int32 each).
]]
local ALG_TAG = 115 -- 's'
local ALG_BYTES = 20
local w_limit, w_len
local function alg_load(A, a)
  w_limit = A[a]
  w_len = A[a + 1]
  return a + 2
end

-- Permits available at s.at, times the window length (whole for whole-ms times).
local function room(s) return w_limit * w_len - s.prev * (s.start + w_len - s.at) - s.cur * w_len end

local function alg_fresh() return { start = -math.huge, cur = 0, prev = 0, len = 0, at = 0 } end
local function alg_capacity() return w_limit end
-- Counting, not refilling: leased permits are in `cur`, so `cap` holds by itself.
local function alg_advance(s, from, to, cap)
  s.at = math.max(s.at, to)
  local ws = math.floor(s.at / w_len) * w_len
  if s.len ~= w_len then
    -- The policy's window changed length: the window containing now, aligned to the new
    -- length, counts everything counted so far as its own.
    s.len = w_len
    s.start = ws
    s.cur = s.cur + s.prev
    s.prev = 0
  elseif ws == s.start + w_len then
    s.prev = s.cur
    s.cur = 0
    s.start = ws
  elseif ws > s.start then
    s.prev = 0
    s.cur = 0
    s.start = ws
  end
end
local function alg_settle(s) end
local function alg_available(s) return math.max(0, math.floor(room(s) / w_len)) end
local function alg_take(s, n) s.cur = s.cur + n end
-- Only permits counted in this window come back: an earlier window's are gone with it.
local function alg_give_back(s, n, cap, grantedAt)
  if grantedAt >= s.start then s.cur = math.max(0, s.cur - n) end
end
local function alg_next_permit_ms(s)
  if room(s) >= w_len then return 0 end
  local wend = s.start + w_len
  if s.prev > 0 and s.cur <= w_limit - 1 then
    local t = wend - ((w_limit - 1 - s.cur) * w_len) / s.prev
    if t < wend then return math.max(1, math.ceil(t - s.at)) end
  end
  local t = wend
  if s.cur > 0 then t = wend + math.max(0, w_len - ((w_limit - 1) * w_len) / s.cur) end
  return math.max(1, math.ceil(t - s.at))
end
local function alg_idle_ms(s)
  if s.cur > 0 then return math.max(0, math.ceil(s.start + 2 * w_len - s.at)) end
  if s.prev > 0 then return math.max(0, math.ceil(s.start + w_len - s.at)) end
  return 0
end
local function alg_life(s, now, ttl) return math.max(0, math.min(ttl, s.start + w_len - now)) end
local function alg_encode(s) return struct.pack('>di4i4i4', s.start, s.cur, s.prev, s.len) end
local function alg_decode(raw, pos, updated)
  local start, cur, prev, len = struct.unpack('>di4i4i4', raw, pos)
  return { start = start, cur = cur, prev = prev, len = len, at = updated }
end
