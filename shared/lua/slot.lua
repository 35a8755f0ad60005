-- Claim (or renew) a place among a channel's running generations, within its concurrency limit.
-- KEYS[1] running set; ARGV[1] generation id, ARGV[2] limit, ARGV[3] claim TTL (ms).
-- Claims of dead workers expire by their score. Returns 1 when held, 0 when the channel is full.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
