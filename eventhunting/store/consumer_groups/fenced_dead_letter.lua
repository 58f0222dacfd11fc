-- fenced_dead_letter.lua: move one log entry to the group's dead letters, under the lease.
--
-- KEYS[1]  lease          "{p<k>}:lease:<group>"
-- KEYS[2]  partition log  "{p<k>}:log"
-- KEYS[3]  dead letters   "{p<k>}:<group>:dead"
--
-- ARGV[1]  the lease's value as the caller took it, "<token> <consumer>"
-- ARGV[2]  consumer group
-- ARGV[3]  entry id
-- ARGV[4..] field, value, field, value ... of the dead-letter entry
--
-- Returns the dead-letter entry id, or -1 (writing nothing) when the lease passed on.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local dead_id = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
return dead_id
