-- wrk script for bench/run.py: POSTs the JSON bodies of a file (one per line), each once,
-- split between wrk's threads, and prints the figures as one JSON line.
-- Usage: wrk ... -s bench/webhook.lua URL -- BODIES_FILE THREADS
-- A thread that runs out of bodies starts again from its first one and counts the wrap, so a
-- run that was not provisioned with enough distinct bodies is reported, never hidden.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(args[2])
  local headers = { ["Content-Type"] = "application/json" }
  bodies = {}
  local line_no = 0
  for line in io.lines(args[1]) do
    if line_no % total == id then
      bodies[#bodies + 1] = wrk.format("POST", wrk.path, headers, line)
    end
    line_no = line_no + 1
  end
  position = 0
  wrapped = 0
end

function request()
  position = position + 1
  if position > #bodies then
    position = 1
    wrapped = wrapped + 1
  end
  return bodies[position]
end

function done(summary, latency, rates)
  local wraps = 0
  for _, thread in ipairs(threads) do
    wraps = wraps + (thread:get("wrapped") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f, "max_ms": %.3f, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "wrapped": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    latency.mean / 1e3, latency.max / 1e3, e.connect, e.read, e.write, e.status, e.timeout, wraps))
end
