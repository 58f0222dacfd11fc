-- dead_letter_retry_settle.lua: settle one retried dead letter, under the group's lease.
--
-- KEYS[1]  lease          "{p<k>}:lease:<group>"
-- KEYS[2]  retry stream   "{p<k>}:<group>:retry"
-- KEYS[3]  dead letters   "{p<k>}:<group>:dead"
--
-- ARGV[1]  the lease's value as the caller took it, "<token> <consumer>"
-- ARGV[2]  the retry entry's id
-- ARGV[3]  "done" (handled: drop it) or "dead" (failed again: back to the dead letters)
-- ARGV[4..] with "dead": field, value, ... of the new dead-letter entry
--
-- Returns 1, 0 when the retry entry was gone already, or -1 (writing nothing) when the
-- lease passed on.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if redis.call('XDEL', KEYS[2], ARGV[2]) == 0 then
  return 0
end
if ARGV[3] == 'dead' then
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))
end
return 1
