-- A cached redirect in one round trip: read the entry and, if it is a live link at the caller's
-- instant, count the click in the same atomic step. Missing, deleted and expired entries count nothing.
-- KEYS[1]: the link's cache entry; KEYS[2]: the pending clicks hash.
-- ARGV[1]: the code; ARGV[2]: now, integer milliseconds since the epoch (the same instant the app
-- checks the answer against, so the script and the app always agree on "live").
local entry = redis.call('GET', KEYS[1])
if entry and entry ~= '-' then
    local link = cjson.decode(entry)
    if not link.d and (link.e == cjson.null or link.e > tonumber(ARGV[2])) then
        redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
    end
end
return entry
