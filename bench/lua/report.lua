-- Shared by every wrk script: number the threads, then print one machine-readable summary line.
-- Counters named in BENCH_COUNTERS (globals of each thread) are summed over the threads.
local report = {}
local threads = {}

function report.setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

function report.done(summary, latency, requests)
  local counters = {}
  for name in string.gmatch(os.getenv("BENCH_COUNTERS") or "", "[%w_]+") do
    local total = 0
    for _, thread in ipairs(threads) do total = total + (tonumber(thread:get(name)) or 0) end
    counters[#counters + 1] = string.format('"%s":%d', name, total)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency":{"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f},"counters":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    table.concat(counters, ",")))
end

return report
