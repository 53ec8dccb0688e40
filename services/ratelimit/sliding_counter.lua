-- Sliding window counter: approximate, constant memory. Two fixed-window counts (the current and
-- the previous window) and an estimate of the sliding window that assumes the previous window's
-- requests were spread evenly:  estimate = previous * (time left of the window / window) + current.
-- The clock is Redis's own (TIME).
--
-- KEYS[1]  a hash {window, current, previous}, e.g. "rl:ctr:{key:alice}:default"
-- ARGV[1]  limit
-- ARGV[2]  window in microseconds
-- returns  {allowed (0/1), remaining, microseconds until one more request fits, now in microseconds}

local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local number = math.floor(now / window)

local stored = redis.call('HMGET', KEYS[1], 'window', 'current', 'previous')
local current = tonumber(stored[2]) or 0
local previous = tonumber(stored[3]) or 0
local last = tonumber(stored[1])
if last == nil or last < number - 1 then
  current, previous = 0, 0
elseif last == number - 1 then
  current, previous = 0, current
end

local elapsed = now - number * window
local weight = (window - elapsed) / window
local allowed = 0
if previous * weight + current + 1 <= limit then
  current = current + 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'window', number, 'current', current, 'previous', previous)
-- The previous window still weighs in during the next one: keep the hash for two windows.
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * window / 1000))

local remaining = math.max(0, math.floor(limit - (previous * weight + current)))

-- t: when the estimate next leaves room for one more request; with room left now, when the
-- counts next shift (the end of the current fixed window).
local reset = window - elapsed
if remaining == 0 then
  if current + 1 <= limit then
    -- within this window, once enough of the previous window has slid out
    local needed = 1 - (limit - 1 - current) / previous
    reset = math.max(0, needed * window - elapsed)
  else
    -- only after the current count becomes the previous one and slides out far enough
    local needed = 1 - (limit - 1) / current
    reset = (window - elapsed) + math.max(0, needed * window)
  end
end
return {allowed, remaining, math.ceil(reset), now}
