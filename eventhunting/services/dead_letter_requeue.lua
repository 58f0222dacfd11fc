-- dead_letter_requeue.lua: move one dead letter to its group's retry stream, once.
--
-- KEYS[1]  dead letters   "{p<k>}:<group>:dead"
-- KEYS[2]  retry stream   "{p<k>}:<group>:retry"
--
-- ARGV[1]  the dead letter's entry id
-- ARGV[2]  the admin who asked (kept as `retried_by`)
-- ARGV[3]  when, in ms since the epoch (kept as `retried_at_ms`)
--
-- Returns the retry entry's id, or false when there is no such dead letter (never there,
-- or moved by an earlier retry: a second request moves nothing).

local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return false
end
local fields = found[1][2]
table.insert(fields, 'retried_by')
table.insert(fields, ARGV[2])
table.insert(fields, 'retried_at_ms')
table.insert(fields, ARGV[3])
local retry_id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[1])
return retry_id
