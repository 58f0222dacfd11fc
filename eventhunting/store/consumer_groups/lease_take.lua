-- lease_take.lua: take a partition's lease for one consumer, or renew it when it holds it.
--
-- KEYS[1]  lease        "{p<k>}:lease:<group>"        value "<token> <consumer>", with a TTL
-- KEYS[2]  fence        "{p<k>}:lease:<group>:fence"  the last token handed out
--
-- ARGV[1]  consumer name
-- ARGV[2]  lease time in milliseconds
--
-- Returns the token of the lease the consumer now holds (renewed: the same token; taken: a
-- new one), or false when another consumer holds it. A new token is greater than every
-- token handed out before for this lease, even after the fence key was lost with the rest
-- of Redis: it is at least the server's clock in microseconds.

local held = redis.call('GET', KEYS[1])
if held then
  local space = string.find(held, ' ', 1, true)
  if string.sub(held, space + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return string.sub(held, 1, space - 1)
  end
  return false
end

local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = string.format('%.0f', math.max(last + 1, clock))
redis.call('SET', KEYS[2], token)
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
