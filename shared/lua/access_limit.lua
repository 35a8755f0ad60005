-- Admit one request of an API key against its token budget and its per-minute limits.
-- Each per-minute counter is a sliding window of one-second buckets (a hash: unix second → amount).
-- KEYS[1] request buckets, KEYS[2] token buckets, KEYS[3] tokens spent in total, KEYS[4] micro-dollars spent
-- (hash: total and per month)
-- ARGV[1] now (ms), ARGV[2] rpm, ARGV[3] tpm, ARGV[4] budget (each 0 when unlimited), ARGV[5] the request's
-- estimated prompt tokens: it must fit in the budget, and is reserved in the token window on admission
-- (the worker settles the difference to the real figures, and adds them to the tokens spent, at the end);
-- ARGV[6] dollar budget, ARGV[7] monthly dollar budget (micro-dollars, 0 when unlimited), ARGV[8] the month.
-- Dollars are charged by the worker when a generation ends, so only requests already running overshoot.
-- Returns {0, 0} when admitted (the request is then counted), else {limit hit, ms until it frees}:
-- 1 rpm, 2 tpm, 3 budget, 4 dollar budget, 5 monthly dollar budget (budgets never free: 0).
local now = tonumber(ARGV[1])
local second = math.floor(now / 1000)

-- The buckets of the last 60 seconds, oldest first, and their total; older buckets are deleted.
local function window(key)
  local raw = redis.call('HGETALL', key)
  local buckets, total = {}, 0
  for i = 1, #raw, 2 do
    local at, amount = tonumber(raw[i]), tonumber(raw[i + 1])
    if at <= second - 60 then
      redis.call('HDEL', key, raw[i])
    else
      table.insert(buckets, {at, amount})
      total = total + amount
    end
  end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  return buckets, total
end

-- Milliseconds until the window's total falls to `allowed`, as its oldest buckets leave it.
local function wait(buckets, total, allowed)
  for _, bucket in ipairs(buckets) do
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
if tpm > 0 then
  local buckets, total = window(KEYS[2])
  -- A prompt larger than the whole limit is still admitted into an empty window, or it never could be.
  if total >= tpm or (total > 0 and total + reserve > tpm) then
    local allowed = reserve > 0 and math.max(0, tpm - reserve) or tpm - 1
    return {2, wait(buckets, total, allowed)}
  end
end
local rpm = tonumber(ARGV[2])
if rpm > 0 then
  local buckets, total = window(KEYS[1])
  if total >= rpm then
    return {1, wait(buckets, total, rpm - 1)}
  end
  redis.call('HINCRBY', KEYS[1], tostring(second), 1)
  redis.call('PEXPIRE', KEYS[1], 61000)
end
if reserve > 0 then
  redis.call('HINCRBY', KEYS[2], tostring(second), reserve)
  redis.call('PEXPIRE', KEYS[2], 61000)
end
return {0, 0}
