-- refresh_revoke.lua: revoke a token family, if the presented token belongs to it and to the
-- given account (logout).
--
-- KEYS[1]  the token family hash "refresh:{<family id>}" (fields: see refresh_rotate.lua)
--
-- ARGV[1]  SHA-256 (hex) of the presented token
-- ARGV[2]  the account that asks
--
-- Returns 1 when the family is (now) revoked, 0 when the token is not one of the account's.

local family = KEYS[1]
local presented = ARGV[1]
local state = redis.call('HMGET', family, 'account', 'current')
if state[1] ~= ARGV[2] then
  return 0
end
if state[2] ~= presented and redis.call('HEXISTS', family, 'used:' .. presented) == 0 then
  return 0
end
redis.call('HSET', family, 'revoked', '1')
return 1
