-- Append a batch of events to a generation's log and publish it, if the caller still holds the lease.
-- KEYS[1] event stream, KEYS[2] lease
-- ARGV[1] lease token, ARGV[2] stream TTL (ms), ARGV[3] relay channel, ARGV[4] '1' to drop the lease
-- afterwards (the batch ends the generation), ARGV[5] the batch as published,
-- ARGV[6..] pairs of (sequence number, encoded envelope)
-- Returns 1, or 0 when the lease belongs to someone else (the caller has been fenced out).
-- A batch sent again (its answer was lost with the connection) appends only what the log lacks; the API
-- drops what it has already seen.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local logged = last and tonumber(string.sub(last[1], 3)) or 0
for i = 6, #ARGV, 2 do
  -- Entry ids are '0-<seq + 1>', so the log is in order and a replayed number is never added twice.
  local number = tonumber(ARGV[i]) + 1
  if number > logged then
    redis.call('XADD', KEYS[1], '0-' .. number, 'e', ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[5])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
end
return 1
