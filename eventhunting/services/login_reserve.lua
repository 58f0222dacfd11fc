-- login_reserve.lua: take one sign-in attempt slot before the password is verified, or say
-- how long to wait. Concurrent attempts cannot all pass: the script runs alone.
--
-- KEYS[1]  counter with a hard limit, one of:
--          "login-failures:address:{<address>}"               attempts from one client address
--          "login-failures:{<email digest>}:address:<address>" one email from one address
-- KEYS[2]  optional: "login-failures:{<email digest>}:account", one email from every address
-- KEYS[3]  with KEYS[2]: "login-failures:{<email digest>}:spacing", present while the
--          account's next attempt past the slow-down ceiling must wait
-- Every key of one call carries the same {...} hash tag (one Redis Cluster slot).
--
-- ARGV[1]  window in milliseconds: the TTL a counter gets when its first slot is taken
-- ARGV[2]  limit of KEYS[1]: at this count the attempt is refused
-- ARGV[3]  with KEYS[2]: slow-down ceiling of KEYS[2]; at this count attempts are spaced
-- ARGV[4]  with KEYS[2]: spacing in milliseconds, one attempt per spacing past the ceiling
--
-- A slot counts until the window ends (a failed attempt keeps it); login_release.lua gives
-- it back after a success.
-- Returns 0 when a slot was taken (every counter incremented), or the milliseconds to wait
-- when refused (nothing changed then).

local window_ms = tonumber(ARGV[1])

local function wait_of(key)
  local remaining = redis.call('PTTL', key)
  if remaining > 0 then
    return remaining
  end
  return window_ms
end

local function take(key)
  if redis.call('INCR', key) == 1 or redis.call('PTTL', key) < 0 then
    -- The first slot starts the window; later ones do not extend it.
    redis.call('PEXPIRE', key, window_ms)
  end
end

local limited = KEYS[1]
if tonumber(redis.call('GET', limited) or '0') >= tonumber(ARGV[2]) then
  return wait_of(limited)
end

local account = KEYS[2]
if account then
  local spacing = KEYS[3]
  if tonumber(redis.call('GET', account) or '0') >= tonumber(ARGV[3]) then
    if redis.call('SET', spacing, '1', 'PX', tonumber(ARGV[4]), 'NX') == false then
      return wait_of(spacing)
    end
  end
  take(account)
end
take(limited)
return 0
