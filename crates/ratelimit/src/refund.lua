-- Gives `cost` back to one or more GCRA keys (see gcra.lua), for example when a
-- sign-in counted as an attempt turns out to have succeeded.
--
-- KEYS[i]     the state of check i.  ARGV[i]: its emission interval, microseconds.
-- ARGV[n+1]   the cost to give back.
-- Mirrors `gcra::refund` in Rust.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local n = #KEYS
local cost = tonumber(ARGV[n + 1])
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat then
    local new_tat = tat - tonumber(ARGV[i]) * cost
    if new_tat <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
    end
  end
end
return n
