--[[
protocol.lua: atomic steps of clients' global buckets with leases, for any
algorithm, several keys per call (a batch: one round trip for every key a node
needs within one event-loop turn). Each key's step mirrors leaseStep() in
src/protocol/lease-step.ts line for line (read the design notes there);
test/lua-script.test.ts checks both give identical answers. The algorithm's part
(lua/algorithms/<name>.lua) is prepended when the script is loaded: it defines
ALG_TAG, ALG_BYTES, alg_load (reads one key's parameters) and the alg_*
functions. Times passed to alg_advance and alg_life are store ms.

KEYS[1]  the batch's first bucket key, declared so that Redis Cluster routes the call
         to the node serving it; the others are not declared, as Cluster refuses
         declared keys of several slots (CROSSSLOT), and the script's
         allow-cross-slot-keys flag lets it touch keys of any slot that node serves.
         A batch holds keys of one node only; a key of another node fails the call.
ARGV[1]  n, the number of keys
ARGV[2..n+1]  the bucket keys: prefix, {keyed hash of the client}, algorithm, policy
ARGV[n+2..2n+1]  each key's arguments, packed in one string of comma-separated numbers
         (one argument per key instead of a dozen: the client's encoding of every
         argument cost more than the step), unpacked into A before the key's step:
  A[a..]   the algorithm's parameters (alg_load returns the index after them: b)
  A[b]     lease TTL (ms)
  A[b+1]   need: permits for requests waiting now
  A[b+2]   extra: permits wanted ahead of demand (at most half of what is left)
  A[b+3]   1 when a report follows, else 0
  A[b+4]   report: grantedAt (ms) of the lease being reported
  A[b+5]   report: permits registered to that lease
  A[b+6]   report: permits of it still unused
  A[b+7]   report: 1 keep the unused permits (renewal), 0 give them back
  A[b+8]   report: number of spend groups n (the step reads at most 16)
  then 2n values: spend groups oldest first, as pairs (ms since the group's
  latest spend, permits spent in the group).

Reply: for each key, six numbers: granted, kept (0/1), grantedAt (ms, Redis TIME,
or the start of the generation the lease is in, at most 1 ms later: the lease's
name), remaining (whole permits), retryAfterMs (ms until a whole permit is back,
when less than one is left; else 0), lifeMs (how long from now the permits
granted or kept may be spent: the TTL, or less when the algorithm's window ends
sooner).

State, binary (struct, big-endian): format version (byte), algorithm tag (byte),
updatedMs (double), then for `cur` and `prev`: updatedMs - startMs, leased,
deadlineMs - updatedMs (int32 each), then the algorithm's own state. Stored with
PX so an idle bucket disappears once it would be full again. A value of another
version or algorithm is never read as this one: the bucket starts fresh (once).
The clock is Redis's own TIME, read once per call, so clock skew between nodes
changes nothing.
]]
local VERSION = 2
local HEADER = '>BBdi4i4i4i4i4i4'
local I32 = 2147483647
local function clamp32(x) return math.max(-I32, math.min(I32, x)) end

local t = redis.call('TIME')
local nowIn = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- One key's step, its arguments packed in `packed`; returns its six reply values.
local function step(key, packed)
  local A = {}
  local k = 0
  for v in string.gmatch(packed, '[^,]+') do
    k = k + 1
    A[k] = tonumber(v)
  end
  local base = alg_load(A, 1) - 1
  local leaseTtl = A[base + 1]
  local need = A[base + 2]
  local extra = A[base + 3]
  local hasReport = A[base + 4] == 1
  local rGrantedAt = A[base + 5]
  local rRegistered = A[base + 6]
  local rUnused = A[base + 7]
  local rKeep = A[base + 8] == 1
  local declared = A[base + 9] or 0
  local rGroups = math.min(16, declared)
  local cap = alg_capacity()

  local s, updated, cur, prev
  local raw = redis.call('GET', key)
  if raw and string.len(raw) >= 34 + ALG_BYTES and string.byte(raw, 1) == VERSION and string.byte(raw, 2) == ALG_TAG then
    local _v, _a, u, cs, cl, cd, ps, pl, pd, pos = struct.unpack(HEADER, raw)
    updated = u
    cur = { start = u - cs, leased = cl, deadline = u + cd }
    prev = { start = u - ps, leased = pl, deadline = u + pd }
    s = alg_decode(raw, pos, u)
  else
    -- A fresh bucket (or one of another format): full, both generations start now, so
    -- reports about leases of an earlier incarnation are stale.
    s = alg_fresh()
    updated = nowIn
    cur = { start = nowIn, leased = 0, deadline = 0 }
    prev = { start = nowIn, leased = 0, deadline = 0 }
  end
  local now = math.max(nowIn, updated)
  local at = updated
  local function leased() return cur.leased + prev.leased end
  -- Lets time pass up to `to`, refilling up to what is not leased out; the cap applies even
  -- when no time passes (a lowered capacity takes effect at once).
  local function advance(to)
    local t = math.max(at, to)
    alg_advance(s, at, t, cap - leased())
    at = t
  end
  -- A generation whose deadline has passed holds only dead leases: free it from its deadline
  -- on, and empty its range of names.
  local function expireUpTo(tt)
    local first, second = prev, cur
    if prev.deadline > cur.deadline then first, second = cur, prev end
    for _, g in ipairs({ first, second }) do
      if g.leased > 0 and g.deadline <= tt then
        advance(math.max(g.deadline, updated))
        g.leased = 0
        if g == cur then cur.start = math.max(cur.start, now) end
        prev.start = cur.start
      end
    end
  end

  local gen = nil
  if hasReport then
    if rGrantedAt >= cur.start then gen = cur
    elseif rGrantedAt >= prev.start then gen = prev end
  end
  if gen and gen.leased > 0 then
    local budget = rRegistered
    for i = 1, rGroups do
      local spendAt = math.min(now, math.max(updated, now - A[base + 8 + 2 * i]))
      expireUpTo(spendAt)
      if gen.leased == 0 then break end
      advance(spendAt)
      local c = math.max(0, math.min(A[base + 9 + 2 * i], budget, gen.leased))
      budget = budget - c
      gen.leased = gen.leased - c
    end
  end
  expireUpTo(now)
  advance(now)

  -- Roll, before this step's grant: `cur` is a TTL old and `prev` holds nothing; the new
  -- `cur` starts a ms later.
  if prev.leased == 0 and now >= cur.start + leaseTtl then
    prev = cur
    cur = { start = now + 1, leased = 0, deadline = 0 }
  end

  local kept = 0
  local keptUnused = 0
  if gen and gen.leased > 0 then
    if rKeep then
      keptUnused = math.min(rUnused, gen.leased)
      gen.leased = gen.leased - keptUnused
      cur.leased = cur.leased + keptUnused
      kept = 1
    else
      local back = math.min(rUnused, gen.leased)
      gen.leased = gen.leased - back
      alg_give_back(s, back, cap - leased(), rGrantedAt)
    end
  end
  alg_settle(s)
  updated = now

  -- A window's permits die with it: nothing is granted for less than a ms.
  local life = alg_life(s, now, leaseTtl)
  local avail = 0
  if life >= 1 then avail = alg_available(s) end
  local granted = 0
  if avail > 0 then
    local forNeed = math.min(need, avail)
    local ahead = math.min(extra, math.floor((avail - forNeed) / 2))
    granted = forNeed + math.max(0, ahead)
  end
  if granted > 0 then
    alg_take(s, granted)
    cur.leased = cur.leased + granted
  end
  -- A renewal that keeps its permits extends their life too, even when nothing new is granted.
  if granted > 0 or kept == 1 then
    cur.deadline = math.max(cur.deadline, now + life)
  end
  -- The lease's name: a time within its generation.
  local grantedAt = math.max(now, cur.start)

  local function lastDeadline()
    local d = 0
    if prev.leased > 0 then d = prev.deadline end
    if cur.leased > 0 then d = math.max(d, cur.deadline) end
    return d
  end
  local left = alg_available(s)
  local retry = 0
  if left < 1 then
    retry = alg_next_permit_ms(s)
    local own = keptUnused + granted
    if cap - (leased() - own) < 1 then retry = math.max(retry, lastDeadline() - now) end
    retry = math.max(1, retry)
  end
  local leaseLeft = 0
  if leased() > 0 then leaseLeft = lastDeadline() - now end
  local ttl = math.max(1, leaseLeft + alg_idle_ms(s) + 1000)

  redis.call('SET', key,
    struct.pack(HEADER, VERSION, ALG_TAG, updated,
      clamp32(updated - cur.start), cur.leased, clamp32(cur.deadline - updated),
      clamp32(updated - prev.start), prev.leased, clamp32(prev.deadline - updated)) .. alg_encode(s),
    'PX', ttl)

  return granted, kept, grantedAt, left, retry, life
end

local n = tonumber(ARGV[1])
-- A batch touches every key before writing any: on Cluster a key this node does not serve
-- fails the call here, before anything is written, so the caller may safely send the batch
-- again key by key (a failure half-way through would leave the earlier steps applied). A
-- single key is the declared one: Cluster itself refuses it before the script runs.
if n > 1 then
  for i = 2, n do redis.call('EXISTS', ARGV[1 + i]) end
end

local out = {}
for i = 1, n do
  local granted, kept, grantedAt, left, retry, life = step(ARGV[1 + i], ARGV[1 + n + i])
  local o = #out
  out[o + 1] = granted
  out[o + 2] = kept
  out[o + 3] = grantedAt
  out[o + 4] = left
  out[o + 5] = retry
  out[o + 6] = life
end
return out
