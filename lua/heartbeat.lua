--[[
heartbeat.lua: this node says it is alive; the reply is how many nodes are.
Nodes use the count to split the limit among themselves when Redis is away
(degraded `local` mode).

KEYS[1]  the fleet key: a sorted set of node ids scored by when they expire
ARGV[1]  this node's id
ARGV[2]  how long this heartbeat counts (ms)

Reply: the number of live nodes, this one included. Redis's own clock decides.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
