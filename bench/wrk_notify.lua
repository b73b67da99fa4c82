-- wrk script: POST /api/notify/ for a random existing user, SMS only, and a JSON summary.
-- Arguments after `--`: the number of users in the database.

local users = 1000

function init(args)
  if args[1] then
    users = tonumber(args[1])
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  local body = string.format(
    '{"user_id": %d, "subject": "bench", "message": "hello from wrk", "channels": ["sms"]}',
    math.random(1, users)
  )
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_s": %.6f, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, ' ..
    '"latency_p50_ms": %.3f, "latency_p99_ms": %.3f, "latency_max_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000
  ))
end
