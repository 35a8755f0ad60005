-- Take a generation's lease unless it is held already or the generation was cancelled.
-- KEYS[1] lease, KEYS[2] cancel flag; ARGV[1] token, ARGV[2] TTL (ms)
-- Returns 1 when taken, 0 when another worker holds it, -1 when the generation was cancelled.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
