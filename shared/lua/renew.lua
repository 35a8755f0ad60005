-- Extend a lease its holder still owns, and tell the holder whether cancellation was asked for.
-- KEYS[1] lease, KEYS[2] cancel flag; ARGV[1] token, ARGV[2] TTL (ms)
-- Returns 0 when the lease is lost, 1 when renewed, 2 when renewed but the generation is cancelled.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 2
end
return 1
