-- Append a batch of events to a generation's log and publish it, if the caller still holds the lease.
-- KEYS[1] event stream, KEYS[2] lease
-- ARGV[1] lease token, ARGV[2] stream TTL (ms), ARGV[3] relay channel, ARGV[4] '1' to drop the lease
-- afterwards (the batch ends the generation), ARGV[5] the batch as published,
-- ARGV[6..] pairs of (sequence number, encoded envelope)
-- Returns 1, or 0 when the lease belongs to someone else (the caller has been fenced out).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
for i = 6, #ARGV, 2 do
  -- The explicit id makes a replayed sequence number an error instead of a duplicate entry.
  redis.call('XADD', KEYS[1], '0-' .. (tonumber(ARGV[i]) + 1), 'e', ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[5])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
end
return 1
