-- Claim a queued arq job for this worker and hand over its payload, in one round trip.
-- KEYS[1] the job's arq key, KEYS[2] the queue; ARGV[1] job id, ARGV[2] now (ms).
-- Returns the job's payload, or false if it is not claimable (taken, not due yet, or expired).
-- Unlike arq, the claim takes the job off the queue and deletes it: a generation runs at most once
-- (a dead worker's are reported through their leases, never re-run), so nothing of the job is left
-- to clean up afterwards, and no poll of any worker reads a running job again.
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
  return false
end
redis.call('ZREM', KEYS[2], ARGV[1])
local payload = redis.call('GET', KEYS[1])
if not payload then
  return false
end
redis.call('DEL', KEYS[1])
return payload
