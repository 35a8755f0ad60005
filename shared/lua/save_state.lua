-- Store a provider's per-session state, unless the caller's run was displaced from the session.
-- KEYS[1] state, KEYS[2] gate; ARGV[1] value, ARGV[2] TTL (ms), ARGV[3] generation id,
-- ARGV[4] 1 when the run is gated. Returns 1 when stored, 0 when fenced out.
if ARGV[4] == '1' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
