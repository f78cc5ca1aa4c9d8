--[[
policy-put.lua: compare-and-set of the policy document, so versions never fork.

KEYS[1]  the current version (a string number)
KEYS[2]  the new version's document key
KEYS[3]  the audit history (a list, newest first)
ARGV[1]  the version the writer read (0: none yet)
ARGV[2]  the document (JSON)
ARGV[3]  the audit entry (JSON, without its version)
ARGV[4]  the channel changes are announced on

Reply: { 1, newVersion } on success; { 0, currentVersion } when ARGV[1] is stale.
All keys share the hash tag {policy}: one Cluster slot.
]]
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then return { 0, current } end
local v = current + 1
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], tostring(v))
local entry = cjson.decode(ARGV[3])
entry['version'] = v
redis.call('LPUSH', KEYS[3], cjson.encode(entry))
redis.call('LTRIM', KEYS[3], 0, 999)
redis.call('PUBLISH', ARGV[4], cjson.encode({ kind = 'policy', version = v }))
return { 1, v }
