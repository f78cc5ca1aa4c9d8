--[[
lease.lua: one atomic step of a client's global token bucket with leases.
Mirrors leaseStep() in src/bucket/global-bucket.ts line for line (read the design
notes there); test/lua-script.test.ts checks both give identical answers.

KEYS[1]  the client's bucket key (a hash of the API key inside a {hash tag})
ARGV[1]  capacity (tokens)
ARGV[2]  refill per second (tokens)
ARGV[3]  lease TTL (ms)
ARGV[4]  need: tokens for requests waiting now
ARGV[5]  extra: tokens wanted ahead of demand (at most half of what is left is granted)
ARGV[6]  report: grantedAt (ms) of the lease being reported, 0 for none
ARGV[7]  report: tokens registered to that lease
ARGV[8]  report: tokens of it still unused
ARGV[9]  report: 1 keep the unused tokens (renewal), 0 give them back
ARGV[10] report: number of spend groups n (at most 16)
ARGV[11..10+2n] report: spend groups oldest first, as pairs (ms since the
         group's latest spend, tokens spent in the group)

Reply: { granted, kept (0/1), grantedAt (ms, Redis TIME), remaining (whole tokens),
         retryAfterMs (ms until a whole token is back, when less than one is left; else 0) }

State: one string "tokens updatedMs leased deadline-updatedMs updatedMs-epoch",
stored with PX so an idle bucket disappears once it would be full again.
The clock is Redis's own TIME, so clock skew between nodes changes nothing.
]]
local t = redis.call('TIME')
local nowIn = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local perMs = tonumber(ARGV[2]) / 1000
local leaseTtl = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local extra = tonumber(ARGV[5])
local rGrantedAt = tonumber(ARGV[6])
local rRegistered = tonumber(ARGV[7])
local rUnused = tonumber(ARGV[8])
local rKeep = ARGV[9] == '1'
local rGroups = math.min(16, tonumber(ARGV[10]) or 0)

local function floor6(x) return math.floor(x * 1e6) / 1e6 end

local tokens, updated, leased, deadline, epoch
local raw = redis.call('GET', KEYS[1])
if raw then
  local a, b, c, d, e = string.match(raw, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
  tokens = tonumber(a); updated = tonumber(b); leased = tonumber(c)
  deadline = updated + tonumber(d)
  if tonumber(e) < 0 then epoch = 0 else epoch = updated - tonumber(e) end
else
  -- A fresh bucket's epoch is now: reports about leases of an earlier incarnation are stale.
  tokens = cap; updated = nowIn; leased = 0; deadline = 0; epoch = nowIn
end
local now = math.max(nowIn, updated)
local kept = 0
local at = updated
-- Refill up to `to`, capped by what is not leased out.
local function advance(to)
  tokens = math.min(cap - leased, tokens + math.max(0, to - at) * perMs)
  at = math.max(at, to)
end
local reportValid = rGrantedAt > 0 and leased > 0 and rGrantedAt >= epoch
local expired = leased > 0 and now >= deadline
local dl = math.max(deadline, updated)
if reportValid then
  -- A lease cannot have spent more than was registered to it.
  local budget = rRegistered
  for i = 1, rGroups do
    local spendAt = math.min(now, math.max(updated, now - tonumber(ARGV[9 + 2 * i])))
    if expired and spendAt > dl then break end
    advance(spendAt)
    local c = math.max(0, math.min(tonumber(ARGV[10 + 2 * i]), budget))
    budget = budget - c
    leased = math.max(0, leased - c)
  end
end
if expired then
  advance(dl)
  leased = 0
  epoch = now
end
advance(now)
if reportValid and not expired then
  if rKeep then
    kept = 1
  else
    local back = math.min(rUnused, leased)
    leased = leased - back
    tokens = math.min(cap - leased, tokens + back)
  end
end
tokens = floor6(tokens)
updated = now

local avail = math.floor(tokens)
local granted = 0
if avail > 0 then
  local forNeed = math.min(need, avail)
  local ahead = math.min(extra, math.floor((avail - forNeed) / 2))
  granted = forNeed + math.max(0, ahead)
end
if granted > 0 then
  tokens = floor6(tokens - granted)
  leased = leased + granted
end
-- A renewal that keeps its tokens extends their life too, even when nothing new is granted.
if granted > 0 or kept == 1 then
  deadline = math.max(deadline, now + leaseTtl)
end

local retry = 0
if tokens < 1 then
  if perMs > 0 then retry = math.ceil((1 - tokens) / perMs) else retry = 9007199254740991 end
  local own = granted
  if kept == 1 then own = own + rUnused end
  if cap - (leased - own) < 1 then retry = math.max(retry, deadline - now) end
  retry = math.max(1, retry)
end
local leaseLeft = 0
if leased > 0 then leaseLeft = deadline - now end
local refillMs = 0
if perMs > 0 then refillMs = math.ceil((cap - tokens) / perMs) end
local ttl = math.max(1, leaseLeft + refillMs + 1000)

-- Relative times keep the value short (~30 bytes); -1 means "never reset".
local epochField = -1
if epoch > 0 then epochField = updated - epoch end
redis.call('SET', KEYS[1],
  string.format('%.6f %d %d %d %d', tokens, updated, leased, math.max(0, deadline - updated), epochField),
  'PX', ttl)

local remaining = math.max(0, math.floor(tokens))
return { granted, kept, now, remaining, retry }
