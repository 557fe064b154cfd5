-- wrk script for scripts/bench. Configured by environment variables:
--   WRK_BODY_BYTES   send a POST with a body of that many bytes (the upload scenario)
--   WRK_CLOSE=1      send `Connection: close` (a new connection per request)
-- done() prints one line, `BENCH_RESULT {json}`, that scripts/bench collects.
local body_bytes = tonumber(os.getenv("WRK_BODY_BYTES") or "0")
if body_bytes > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", body_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end
if os.getenv("WRK_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, ' ..
    '"timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
