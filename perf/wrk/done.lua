-- perf's done() script for wrk: after the run, print wrk's exact results
-- in lines starting with "perf-wrk" for perf/wrk.Parse. wrk loads it with
-- -s; it changes nothing in how requests are sent.

-- latency(i) scans wrk's histogram from its minimum for every i, so
-- exporting all of it costs about (distinct values) x (max - min) steps.
-- Above this budget (about a second) the script samples the distribution
-- on a log percentile scale instead.
local budget = 2e9

done = function(summary, latency, requests)
  local out = {}
  local function put(...) out[#out + 1] = string.format(...) end
  local e = summary.errors
  local n = #latency
  put("perf-wrk v1\n")
  put("perf-wrk summary duration_us %d requests %d bytes %d\n", summary.duration, summary.requests, summary.bytes)
  put("perf-wrk errors connect %d read %d write %d status %d timeout %d\n",
    e.connect, e.read, e.write, e.status, e.timeout)
  if n == 0 then
    put("perf-wrk latency min 0 max 0\n")
  else
    put("perf-wrk latency min %d max %d\n", latency.min, latency.max)
  end
  for _, p in ipairs({50, 90, 99, 99.9}) do
    put("perf-wrk percentile %g %d\n", p, n == 0 and 0 or latency:percentile(p))
  end
  if n * (latency.max - latency.min + 1) <= budget then
    for i = 1, n do
      local v, c = latency(i)
      put("perf-wrk hist %d %d\n", v, c)
    end
    put("perf-wrk end hist %d\n", n)
  else
    -- x = log10(1/(1-p)) from 0 to 5 in steps of 0.05, like perf's
    -- plots (90, 99, 99.9 fall on it), with 50 and 75 added.
    local ps = {}
    for i = 0, 100 do
      ps[#ps + 1] = 100 * (1 - 10 ^ (-i / 20))
    end
    ps[#ps + 1] = 50
    ps[#ps + 1] = 75
    table.sort(ps)
    for _, p in ipairs(ps) do
      put("perf-wrk quantile %.6f %d\n", p, latency:percentile(p))
    end
    put("perf-wrk end quantiles %d\n", #ps)
  end
  io.write(table.concat(out))
end
