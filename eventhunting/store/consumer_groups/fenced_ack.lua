-- fenced_ack.lua: acknowledge log entries only while the caller still holds the lease.
--
-- KEYS[1]  lease          "{p<k>}:lease:<group>"
-- KEYS[2]  partition log  "{p<k>}:log"
--
-- ARGV[1]  the lease's value as the caller took it, "<token> <consumer>"
-- ARGV[2]  consumer group
-- ARGV[3..] entry ids
--
-- Returns the number of entries acknowledged, or -1 (and acknowledges nothing) when the
-- lease passed to another consumer: a former owner cannot commit.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
return redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, 3))
