-- Request a random path from the file named by the PATHS environment variable (one path
-- per line), and print the summary as one JSON line so the harness need not parse text.
-- With COUNT_STATUS set (e.g. 302), every response's status is read (wrk then calls
-- response() per response, a small cost) and the summary adds how many had that status
-- ("status_matched") and how many did not ("status_other"), over every thread.
local paths = {}
local threads = {}
local counting = tonumber(os.getenv("COUNT_STATUS") or "")

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(os.getenv("PATHS"), "r"))
  for line in file:lines() do
    if #line > 0 then paths[#paths + 1] = line end
  end
  file:close()
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end

if counting then
  matched, other = 0, 0
  function response(status, headers, body)
    if status == counting then matched = matched + 1 else other = other + 1 end
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  local counts = ""
  if counting then
    local m, o = 0, 0
    for _, thread in ipairs(threads) do
      m = m + thread:get("matched")
      o = o + thread:get("other")
    end
    counts = string.format(', "status_matched": %d, "status_other": %d', m, o)
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d%s}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    latency.mean / 1000, errors.connect, errors.read, errors.write, errors.status,
    errors.timeout, counts))
end
