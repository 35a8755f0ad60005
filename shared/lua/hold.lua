-- Extend the session gate while the caller's generation still holds it.
-- KEYS[1] gate; ARGV[1] generation id, ARGV[2] TTL (ms). Returns 1, or 0 when another run took over.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
