-- GCRA over one or more keys that share a hash tag (one Redis Cluster slot), all or
-- nothing: either every key has room and each is charged `cost`, or none is touched.
--
-- KEYS[i]        the state of check i: its theoretical arrival time (TAT), in
--                microseconds since the Unix epoch, as an integer string.
-- ARGV[2i-1]     the emission interval of check i, microseconds.
-- ARGV[2i]       the burst of check i (requests that may arrive at once).
-- ARGV[2n+1]     the cost of this request (normally 1).
--
-- Returns a flat array of 4 integers per key: allowed (1/0), remaining, reset (µs
-- until the whole burst is available again), retry after (µs; 0 when allowed).
-- The clock is the server's, so instances with skewed clocks share one limit. This
-- mirrors `gcra::acquire` in Rust (the in-process fallback); keep them in step.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local n = #KEYS
local cost = tonumber(ARGV[2 * n + 1])
local all = true
local out = {}
local charged = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - interval * burst
  if now >= allow_at then
    charged[i] = new_tat
    out[#out + 1] = 1
    out[#out + 1] = math.floor((now - allow_at) / interval)
    out[#out + 1] = new_tat - now
    out[#out + 1] = 0
  else
    all = false
    out[#out + 1] = 0
    out[#out + 1] = math.max(0, math.floor((now + interval * burst - tat) / interval))
    out[#out + 1] = tat - now
    out[#out + 1] = allow_at - now
  end
end
if all then
  for i = 1, n do
    -- '%.0f': Lua would print a large number in exponent form and lose digits.
    redis.call('SET', KEYS[i], string.format('%.0f', charged[i]), 'PX', math.max(1, math.ceil((charged[i] - now) / 1000)))
  end
end
return out
