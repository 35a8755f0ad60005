-- Admit a generation to run in its session (the execution gate), fenced by a counter.
-- KEYS[1] gate, KEYS[2] fence; ARGV[1] generation id, ARGV[2] gate TTL (ms), ARGV[3] 'reject' or
-- 'takeover', ARGV[4] session TTL (ms).
-- Returns {fence, previous holder or false}; fence 0 means rejected because another run holds the gate.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and ARGV[3] == 'reject' then
  return {0, holder}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {fence, holder}
