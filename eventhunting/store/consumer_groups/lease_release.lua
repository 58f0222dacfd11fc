-- lease_release.lua: give a partition's lease back, only if it is still the caller's.
--
-- KEYS[1]  lease  "{p<k>}:lease:<group>"
--
-- ARGV[1]  the lease's value as the caller took it, "<token> <consumer>"
--
-- Returns 1 when released, 0 when the lease had already passed to another consumer.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
