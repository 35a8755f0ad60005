-- Drop a lease, but only the caller's own: a lease that expired and was taken over stays.
-- KEYS[1] lease; ARGV[1] token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
