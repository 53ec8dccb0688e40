-- Sliding log: exact. One sorted set per identity holds the admission time of every request in
-- the last window; a request is admitted while fewer than `limit` are in it.
-- The clock is Redis's own (TIME), so every app server agrees on it whatever its own clock says.
--
-- KEYS[1]  the log, e.g. "rl:log:{key:alice}:default" (hash tag: one slot per identity in a cluster)
-- ARGV[1]  limit
-- ARGV[2]  window in microseconds
-- returns  {allowed (0/1), remaining, microseconds until one more request fits, now in microseconds}

local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local allowed = 0
if used < limit then
  -- The member is the admission time; two admissions in one microsecond get a suffix each,
  -- so they stay two members. (Integer formatting: Lua would print the number as 1.76e+15.)
  local member = string.format('%d', now)
  local suffix = 0
  while redis.call('ZADD', KEYS[1], 'NX', now, member) == 0 do
    suffix = suffix + 1
    member = string.format('%d-%d', now, suffix)
  end
  used = used + 1
  allowed = 1
end
-- Every key expires once its newest entry has left the window: nothing leaks.
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))

-- t: when the oldest request in the window leaves it, giving back one request of the quota.
local reset = 0
if used > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  reset = tonumber(oldest[2]) + window - now
end
return {allowed, limit - used, reset, now}
