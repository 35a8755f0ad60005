-- Claim a queued job for this worker, take its generation's lease, and hand over its payload, in one
-- round trip. All keys are the generation's (one cluster slot); the caller takes the id off the queue.
-- KEYS[1] the job, KEYS[2] the generation's lease, KEYS[3] its cancel flag
-- ARGV[1] lease token, ARGV[2] lease TTL (ms)
-- Returns {payload, lease} with lease as acquire.lua's answer (1 taken, 0 held elsewhere, -1 cancelled),
-- or false if there is no job to claim (another worker took it, or it expired).
-- Unlike arq, the claim deletes the job: a generation runs at most once (a dead worker's are reported
-- through their leases, never re-run), so nothing of the job is left to clean up afterwards.
local payload = redis.call('GET', KEYS[1])
if not payload then
  return false
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {payload, -1}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {payload, 1}
end
return {payload, 0}
