-- Mark a sale sold out, together with the keys whose orders succeeded, in one step: a check can
-- never see the mark without every winner it must let through.
-- Only if Redis still names the same sale: a slow request of an earlier sale finds the gate of the
-- reopened sale and leaves it open. A gate already marked is left as it is (the winners are final).
--
-- KEYS[1]  the sale's gate (a hash)
-- ARGV[1]  the sale the caller saw sold out (its opened_at)
-- ARGV[2]  TTL in milliseconds
-- ARGV[3…] one hash field per winning (customer, key)
-- Returns 1 when this call marked the gate, 0 otherwise.
if redis.call('HGET', KEYS[1], 'sale') ~= ARGV[1] then
    return 0
end
if redis.call('HEXISTS', KEYS[1], 'sold-out') == 1 then
    return 0
end
-- One HSET per winner rather than unpack(): Lua's unpack stops at a few thousand values.
for i = 3, #ARGV do
    redis.call('HSET', KEYS[1], ARGV[i], '1')
end
redis.call('HSET', KEYS[1], 'sold-out', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
