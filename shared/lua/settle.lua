-- Settle one generation on its API key: usage counters, the token window's reservation, and spend.
-- KEYS[1] usage hash, KEYS[2] token buckets, KEYS[3] tokens spent, KEYS[4] dollars spent (hash),
-- KEYS[5] the token window's running total (see access_limit.lua)
-- ARGV[1] model; ARGV[2..7] requests, errors, estimated, input, output and cached tokens (0: not counted);
-- ARGV[8] the token bucket to correct, ARGV[9] by how much, ARGV[10] the bucket's TTL (s);
-- ARGV[11] tokens to add to the spent total; ARGV[12] micro-dollars spent, ARGV[13] the month (YYYY-MM).
local metrics = {'requests', 'errors', 'estimated', 'input_tokens', 'output_tokens', 'cached_tokens'}
for i, metric in ipairs(metrics) do
  local amount = tonumber(ARGV[i + 1])
  if amount ~= 0 then
    redis.call('HINCRBY', KEYS[1], metric .. ':' .. ARGV[1], amount)
  end
end
local change = tonumber(ARGV[9])
if change ~= 0 then
  local from = tonumber(redis.call('HGET', KEYS[5], 'from'))
  -- A bucket the window has already passed is left alone: it no longer counts.
  if from == nil or tonumber(ARGV[8]) >= from then
    if from ~= nil then
      redis.call('HINCRBY', KEYS[5], 'sum', change)
      redis.call('EXPIRE', KEYS[5], tonumber(ARGV[10]))
    end
    redis.call('HINCRBY', KEYS[2], ARGV[8], change)
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[10]))
  end
end
local tokens = tonumber(ARGV[11])
if tokens ~= 0 then
  redis.call('INCRBY', KEYS[3], tokens)
end
local micro = tonumber(ARGV[12])
if micro ~= 0 then
  redis.call('HINCRBY', KEYS[4], 'total', micro)
  redis.call('HINCRBY', KEYS[4], ARGV[13], micro)
end
return 0
