-- Release a lock only if this caller still holds it: a filler that outlived its lock's TTL must not
-- delete the lock a later filler took.
-- KEYS[1]: the lock key; ARGV[1]: the token the caller set it to.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
