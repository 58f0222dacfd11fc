-- refresh_rotate.lua: use a refresh token once, replacing it with a new one, atomically.
--
-- KEYS[1]  the token family hash "refresh:{<family id>}" with fields
--          account, current (SHA-256 of the one usable token), expires_ms (of that token),
--          revoked ("1" once revoked), used:<SHA-256> (tokens already spent).
--
-- ARGV[1]  SHA-256 (hex) of the presented token
-- ARGV[2]  SHA-256 (hex) of the replacement token
-- ARGV[3]  now, epoch milliseconds
-- ARGV[4]  expiry of the replacement token, epoch milliseconds
--
-- Returns {"ok", account} after rotating; {"reused", account} when a spent token came back
-- (the whole family is revoked then); {"revoked"}, {"expired"} or {"unknown"} otherwise.
-- Two concurrent uses of one token cannot both see it as current: the script runs alone.

local family = KEYS[1]
local presented = ARGV[1]
local replacement = ARGV[2]
local now_ms = tonumber(ARGV[3])
local expires_ms = tonumber(ARGV[4])

local state = redis.call('HMGET', family, 'account', 'current', 'expires_ms', 'revoked')
local account, current, current_expires, revoked = state[1], state[2], state[3], state[4]
if not account then
  return {'unknown'}
end
if revoked == '1' then
  return {'revoked'}
end
if current == presented then
  if tonumber(current_expires) <= now_ms then
    return {'expired'}
  end
  redis.call('HSET', family, 'current', replacement, 'expires_ms', expires_ms,
    'used:' .. presented, now_ms)
  -- The family lives as long as its newest token, so a late reuse is still recognised.
  redis.call('PEXPIREAT', family, expires_ms)
  return {'ok', account}
end
if redis.call('HEXISTS', family, 'used:' .. presented) == 1 then
  redis.call('HSET', family, 'revoked', '1')
  return {'reused', account}
end
return {'unknown'}
