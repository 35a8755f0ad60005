-- Claim an arq job for this worker, as arq's own start_jobs does with WATCH/MULTI, in one round trip.
-- KEYS[1] arq in-progress key of the job, KEYS[2] the queue; ARGV[1] job id, ARGV[2] now (ms),
-- ARGV[3] in-progress TTL (ms). Returns the job's queue score, or false if it is not claimable.
-- Unlike arq, the claim takes the job off the queue: a generation runs at most once (a dead worker's
-- are reported through their leases, never re-run), and every poll of every worker would otherwise
-- read and re-check each running job.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
  return false
end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
redis.call('ZREM', KEYS[2], ARGV[1])
return score
