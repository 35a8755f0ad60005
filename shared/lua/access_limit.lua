-- Admit one request of an API key against its token budget and its per-minute limits.
-- Each per-minute counter is a sliding window of one-second buckets (a hash: unix second → amount), with
-- its running total beside it (a hash: 'sum' and 'from', the oldest second not yet evicted), so that an
-- admission reads two fields instead of sixty buckets: buckets leave the total as the window passes them.
-- The total never outlives its buckets: it gets their TTL in the same script (here and settle.lua), first.
-- KEYS[1] request buckets, KEYS[2] token buckets, KEYS[3] tokens spent in total, KEYS[4] micro-dollars spent
-- (hash: total and per month), KEYS[5] the request window's total, KEYS[6] the token window's total
-- ARGV[1] now (ms), ARGV[2] rpm, ARGV[3] tpm, ARGV[4] budget (each 0 when unlimited), ARGV[5] the request's
-- estimated prompt tokens: it must fit in the budget, and is reserved in the token window on admission
-- (the worker settles the difference to the real figures, and adds them to the tokens spent, at the end);
-- ARGV[6] dollar budget, ARGV[7] monthly dollar budget (micro-dollars, 0 when unlimited), ARGV[8] the month.
-- Dollars are charged by the worker when a generation ends, so only requests already running overshoot.
-- Returns {0, 0} when admitted (the request is then counted), else {limit hit, ms until it frees}:
-- 1 rpm, 2 tpm, 3 budget, 4 dollar budget, 5 monthly dollar budget (budgets never free: 0).
local now = tonumber(ARGV[1])
local second = math.floor(now / 1000)
local oldest = second - 59
local TTL_MS = 61000

-- The window's total once the buckets older than `oldest` are deleted, and the second evicted up to.
local function window(buckets, totals)
  local state = redis.call('HMGET', totals, 'sum', 'from')
  local sum, from = tonumber(state[1]), tonumber(state[2])
  if sum == nil or from == nil or oldest - from > 60 then
    -- No running total (a new or expired window, or one idle for over a minute): count the buckets once.
    local raw = redis.call('HGETALL', buckets)
    sum = 0
    for i = 1, #raw, 2 do
      if tonumber(raw[i]) < oldest then
        redis.call('HDEL', buckets, raw[i])
      else
        sum = sum + tonumber(raw[i + 1])
      end
    end
    -- A millisecond less than the buckets' TTL: the clock may turn a millisecond between the two calls.
    local ttl = redis.call('PTTL', buckets) - 1
    if ttl > 0 then
      redis.call('HSET', totals, 'sum', sum, 'from', oldest)
      redis.call('PEXPIRE', totals, ttl)
    else
      redis.call('DEL', totals)
    end
    return sum, oldest
  end
  if from < oldest then
    local gone = {}
    for at = from, oldest - 1 do
      gone[#gone + 1] = at
    end
    for _, amount in ipairs(redis.call('HMGET', buckets, unpack(gone))) do
      if amount then
        sum = sum - tonumber(amount)
      end
    end
    redis.call('HDEL', buckets, unpack(gone))
    redis.call('HSET', totals, 'sum', sum, 'from', oldest)
    from = oldest
  end
  return sum, from
end

-- Count `amount` in this second's bucket.
local function add(buckets, totals, sum, from, amount)
  redis.call('HINCRBY', buckets, second, amount)
  redis.call('HSET', totals, 'sum', sum + amount, 'from', from)
  redis.call('PEXPIRE', totals, TTL_MS)
  redis.call('PEXPIRE', buckets, TTL_MS)
end

-- Milliseconds until the window's total falls to `allowed`, as its oldest buckets leave it (on refusal only).
local function wait(buckets, total, allowed)
  local raw = redis.call('HGETALL', buckets)
  local live = {}
  for i = 1, #raw, 2 do
    local at = tonumber(raw[i])
    if at >= oldest then
      table.insert(live, {at, tonumber(raw[i + 1])})
    end
  end
  table.sort(live, function(a, b) return a[1] < b[1] end)
  for _, bucket in ipairs(live) do
    total = total - bucket[2]
    if total <= allowed then
      return (bucket[1] + 60) * 1000 - now
    end
  end
  return 60000
end

local budget = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
if budget > 0 then
  local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
  if spent >= budget or spent + reserve > budget then
    return {3, 0}
  end
end
local budget_usd, monthly_usd = tonumber(ARGV[6]), tonumber(ARGV[7])
if budget_usd > 0 or monthly_usd > 0 then
  local spent = redis.call('HMGET', KEYS[4], 'total', ARGV[8])
  if budget_usd > 0 and tonumber(spent[1] or '0') >= budget_usd then
    return {4, 0}
  end
  if monthly_usd > 0 and tonumber(spent[2] or '0') >= monthly_usd then
    return {5, 0}
  end
end
local tpm = tonumber(ARGV[3])
local tokens, tokens_from
if tpm > 0 or reserve > 0 then
  tokens, tokens_from = window(KEYS[2], KEYS[6])
end
if tpm > 0 then
  -- A prompt larger than the whole limit is still admitted into an empty window, or it never could be.
  if tokens >= tpm or (tokens > 0 and tokens + reserve > tpm) then
    local allowed = reserve > 0 and math.max(0, tpm - reserve) or tpm - 1
    return {2, wait(KEYS[2], tokens, allowed)}
  end
end
local rpm = tonumber(ARGV[2])
if rpm > 0 then
  local requests, from = window(KEYS[1], KEYS[5])
  if requests >= rpm then
    return {1, wait(KEYS[1], requests, rpm - 1)}
  end
  add(KEYS[1], KEYS[5], requests, from, 1)
end
if reserve > 0 then
  add(KEYS[2], KEYS[6], tokens, tokens_from, reserve)
end
return {0, 0}
