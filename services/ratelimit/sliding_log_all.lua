-- Several sliding logs checked as one: a request is admitted only if every log has room, and then
-- counted in every one of them (e.g. the route's quota and the caller's overall budget).
-- A script may touch only the keys it names, and on Redis Cluster only keys of one slot: keys
-- named without a shared hash tag make the server refuse the script with CROSSSLOT.
--
-- KEYS[i]  a log, e.g. "rl:all:{key:alice}:default" and "rl:all:{key:alice}:overall"
-- ARGV[2i-1], ARGV[2i]  the limit of KEYS[i] and its window in microseconds
-- returns  {allowed (0/1), remaining in the tightest log, now in microseconds}

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local remaining = math.huge
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[2 * i]))
  remaining = math.min(remaining, tonumber(ARGV[2 * i - 1]) - redis.call('ZCARD', key))
end
if remaining <= 0 then
  return {0, 0, now}
end
-- The member is the admission time, with a suffix when another admission of that microsecond
-- already sits in any of the logs.
local function absent(member)
  for _, key in ipairs(KEYS) do
    if redis.call('ZSCORE', key, member) then
      return false
    end
  end
  return true
end
local member, suffix = string.format('%d', now), 0
while not absent(member) do
  suffix = suffix + 1
  member = string.format('%d-%d', now, suffix)
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, member)
  -- Every log expires once its newest entry has left its window: nothing leaks.
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[2 * i]) / 1000))
end
return {1, remaining - 1, now}
