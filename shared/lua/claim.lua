-- Claim a queued arq job for this worker, take its generation's lease, and hand over its payload, in
-- one round trip. The one script that spans slots (arq's keys and the generation's): the queue is a
-- single key in any case.
-- KEYS[1] the job's arq key, KEYS[2] the queue, KEYS[3] the generation's lease, KEYS[4] its cancel flag
-- ARGV[1] job id, ARGV[2] now (ms), ARGV[3] lease token, ARGV[4] lease TTL (ms)
-- Returns {payload, lease} with lease as acquire.lua's answer (1 taken, 0 held elsewhere, -1 cancelled),
-- or false if the job is not claimable (taken, not due yet, or expired).
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
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {payload, -1}
end
if redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {payload, 1}
end
return {payload, 0}
