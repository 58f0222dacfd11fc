-- login_release.lua: give back the slots login_reserve.lua took, after a correct password
-- (or when a later counter refused the attempt).
--
-- KEYS[1..n]  counters of login_reserve.lua, all with the same {...} hash tag (one slot)
--
-- ARGV[i]  what to do with KEYS[i]: "clear" deletes it (a correct password from this address
--          for this email forgives its failures); "return" takes one slot back when the
--          counter still exists and is above 0, keeping its TTL (a counter whose window has
--          ended is not created again without one).
--
-- Returns the number of counters changed.

local changed = 0
for index, key in ipairs(KEYS) do
  if ARGV[index] == 'clear' then
    changed = changed + redis.call('DEL', key)
  elseif tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
    changed = changed + 1
  end
end
return changed
