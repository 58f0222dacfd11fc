-- append.lua: append events to one aggregate stream and its partition log, all or nothing.
--
-- KEYS[1]  partition log            "{p<k>}:log"
-- KEYS[2]  aggregate stream         "{p<k>}:stream:<stream>"
-- KEYS[3..] every other key the request touches, all of partition k: the idempotency
--          record "{p<k>}:idem:<id>", counters "{p<k>}:counter:<name>", claims
--          "{p<k>}:claim:<name>", schedules "{p<k>}:schedule:<name>" and other aggregate
--          streams whose version is checked "{p<k>}:stream:<stream>". They are declared
--          for Redis Cluster; the script derives them from the "{p<k>}:" prefix of KEYS[1]
--          and the names in the effects.
--
-- ARGV[1]  expected version of the aggregate stream: -1 any, 0 must not exist, n exactly n
-- ARGV[2]  stream name (stored in each log entry as field "s")
-- ARGV[3]  effects JSON, or "" when the append has none:
--          {"idempotency_id"?, "fingerprint"?, "event_count"? (unused here; for restore),
--           "counter_sets"?: [{"name", "values": {field: int}}],
--           "counter_changes"?: [{"name", "deltas": {field: int}, "sum_fields"?: [field],
--                                 "ceiling_field"?, "ceiling"?, "code"}],
--           "claims"?: [{"name", "owner", "code"}],
--           "schedules"?: [{"name", "member", "score"?}],   (no score = remove)
--           "stream_versions"?: [{"stream", "version", "code"}],   (other streams read)
--           "numbering"?: {"name", "field", "maximum", "code",
--                          "fills": [{"find", "before", "digits", "after"}]}}
--          It is stored verbatim as field "x" of the last log entry, so a restore from the
--          archive can replay the counters, claims, schedules and idempotency records.
-- ARGV[4..] one stored event record (JSON) per event, in order.
--
-- Checks, in order, before anything is written:
--   1. a known idempotency id returns {"dup", <earlier result JSON>};
--   2. a version mismatch returns {"version", <actual version>};
--   3. another stream of "stream_versions" not at its stated version returns
--      {"guard", <code>, <stream>};
--   4. a claim owned by someone else, or a counter change that leaves a changed field
--      below 0 or sum_fields above the ceiling, returns {"guard", <code>, <name>};
--   5. a numbering whose next number (its counter field + 1) would pass "maximum" returns
--      {"guard", <code>, <name>}.
-- Numbering: the number is taken here, after every check, so a refused append takes none.
-- In each event record every occurrence of a fill's "find" text (a placeholder with its
-- key, e.g. "sequence":0) becomes "before" .. the number on "digits" digits .. "after".
-- On success: XADD each event to the aggregate stream (entry id 0-<version>, field "e")
-- and to the partition log (fields "s", "v", "e" and "x" on the last), then apply counter
-- sets (fields that do not exist yet), counter deltas, the numbering's counter, claims and
-- schedules, store the idempotency result, and return
-- {"ok", <new version>, "<position> <position> ...", <number taken>?}.

local log_key = KEYS[1]
local stream_key = KEYS[2]
local prefix = string.sub(log_key, 1, #log_key - 3)
local expected = tonumber(ARGV[1])
local stream = ARGV[2]
local effects_json = ARGV[3]
local event_count = #ARGV - 3

local effects = nil
if effects_json ~= '' then
  effects = cjson.decode(effects_json)
end

local function present(value)
  return value ~= nil and value ~= cjson.null
end

local idempotency_key = nil
if effects and present(effects.idempotency_id) then
  idempotency_key = prefix .. 'idem:' .. effects.idempotency_id
  local earlier = redis.call('GET', idempotency_key)
  if earlier then
    return {'dup', earlier}
  end
end

local current = redis.call('XLEN', stream_key)
if expected >= 0 and current ~= expected then
  return {'version', current}
end

-- Counter values as they will be after this append: name -> field -> number.
local counters = {}
local dirty = {}
local function counter_value(name, field)
  local fields = counters[name]
  if fields == nil then
    fields = {}
    counters[name] = fields
  end
  local value = fields[field]
  if value == nil then
    value = redis.call('HGET', prefix .. 'counter:' .. name, field)
    if value then value = tonumber(value) else value = false end
    fields[field] = value
  end
  return value
end
local function set_counter(name, field, value)
  counter_value(name, field)
  counters[name][field] = value
  dirty[name] = dirty[name] or {}
  dirty[name][field] = true
end

if effects then
  for _, read in ipairs(effects.stream_versions or {}) do
    if redis.call('XLEN', prefix .. 'stream:' .. read.stream) ~= read.version then
      return {'guard', read.code, read.stream}
    end
  end
  for _, claim in ipairs(effects.claims or {}) do
    local owner = redis.call('GET', prefix .. 'claim:' .. claim.name)
    if owner and owner ~= claim.owner then
      return {'guard', claim.code, claim.name}
    end
  end
  for _, initial in ipairs(effects.counter_sets or {}) do
    for field, value in pairs(initial.values) do
      if counter_value(initial.name, field) == false then
        set_counter(initial.name, field, value)
      end
    end
  end
  for _, change in ipairs(effects.counter_changes or {}) do
    local name = change.name
    for field, delta in pairs(change.deltas) do
      local value = (counter_value(name, field) or 0) + delta
      if value < 0 then
        return {'guard', change.code, name}
      end
      set_counter(name, field, value)
    end
    local sum_fields = change.sum_fields or {}
    if #sum_fields > 0 then
      local total = 0
      for _, field in ipairs(sum_fields) do
        total = total + (counter_value(name, field) or 0)
      end
      local ceiling
      if present(change.ceiling_field) then
        ceiling = counter_value(name, change.ceiling_field) or 0
      elseif present(change.ceiling) then
        ceiling = change.ceiling
      else
        ceiling = 0
      end
      if total > ceiling then
        return {'guard', change.code, name}
      end
    end
  end
end

local records = {}
for i = 1, event_count do
  records[i] = ARGV[3 + i]
end

local number = nil
if effects and present(effects.numbering) then
  local numbering = effects.numbering
  number = (counter_value(numbering.name, numbering.field) or 0) + 1
  if number > numbering.maximum then
    return {'guard', numbering.code, numbering.name}
  end
  set_counter(numbering.name, numbering.field, number)
  for _, fill in ipairs(numbering.fills) do
    local digits = string.format('%d', number)
    if #digits < fill.digits then
      digits = string.rep('0', fill.digits - #digits) .. digits
    end
    local replacement = fill.before .. digits .. fill.after
    for i = 1, event_count do
      local record = records[i]
      local parts = {}
      local start = 1
      while true do
        local first, last = string.find(record, fill.find, start, true)
        if not first then break end
        parts[#parts + 1] = string.sub(record, start, first - 1)
        parts[#parts + 1] = replacement
        start = last + 1
      end
      if start > 1 then
        parts[#parts + 1] = string.sub(record, start)
        records[i] = table.concat(parts)
      end
    end
  end
end

local positions = {}
for i = 1, event_count do
  local version = current + i
  local record = records[i]
  redis.call('XADD', stream_key, '0-' .. version, 'e', record)
  if i == event_count and effects then
    positions[i] = redis.call('XADD', log_key, '*', 's', stream, 'v', version, 'e', record, 'x', effects_json)
  else
    positions[i] = redis.call('XADD', log_key, '*', 's', stream, 'v', version, 'e', record)
  end
end
local new_version = current + event_count
local joined_positions = table.concat(positions, ' ')

if effects then
  for name, fields in pairs(dirty) do
    local pairs_to_set = {}
    for field, _ in pairs(fields) do
      pairs_to_set[#pairs_to_set + 1] = field
      pairs_to_set[#pairs_to_set + 1] = string.format('%d', counters[name][field])
    end
    redis.call('HSET', prefix .. 'counter:' .. name, unpack(pairs_to_set))
  end
  for _, claim in ipairs(effects.claims or {}) do
    redis.call('SET', prefix .. 'claim:' .. claim.name, claim.owner)
  end
  for _, schedule in ipairs(effects.schedules or {}) do
    local key = prefix .. 'schedule:' .. schedule.name
    if present(schedule.score) then
      redis.call('ZADD', key, string.format('%.17g', schedule.score), schedule.member)
    else
      redis.call('ZREM', key, schedule.member)
    end
  end
  if idempotency_key then
    local earlier = {stream = stream, version = new_version, count = event_count, positions = joined_positions}
    if present(effects.fingerprint) then
      earlier.fingerprint = effects.fingerprint
    end
    redis.call('SET', idempotency_key, cjson.encode(earlier))
  end
end

if number then
  return {'ok', new_version, joined_positions, number}
end
return {'ok', new_version, joined_positions}
