--[[
The seeds' design (seed 000): one token bucket per client in Redis, checked on
every request by one Lua call, after one GET (the client's tier or policy).
Used only by the benchmark, as the baseline without a local tier.

KEYS[1] bucket key   ARGV[1] capacity   ARGV[2] refill per second
Reply: { allowed (0/1), whole tokens left, ms until a token (0 if allowed) }
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) * 1000 / rate) + 1000)
return { allowed, math.floor(tokens), wait }
