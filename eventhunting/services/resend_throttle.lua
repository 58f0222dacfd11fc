-- resend_throttle.lua: take one slot of an order's ticket-mail resends in a fixed window.
--
-- KEYS[1]  the order's resend counter  "{p<k>}:resend-limit:<order id>"
--
-- ARGV[1]  resends allowed per window
-- ARGV[2]  window length in milliseconds (the counter's TTL, set by the first slot)
--
-- Returns {1, 0} when a slot was taken, or {0, ms} when the window is full, with the
-- milliseconds until it ends (nothing is counted then).

local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    -- A counter without a TTL would block forever: give it the window again.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return {0, left}
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, 0}
