-- wrk script: replay precomputed, signed Twilio webhooks; one request file per wrk thread.
--
--   wrk -t T -c C -d D -s bench/stream.lua http://127.0.0.1:PORT -- PREFIX MODE
--
-- Thread n reads PREFIX.n.req: records of an 8-digit length and the raw HTTP request. Each thread
-- keeps its own counter, so threads play disjoint sets of patients. MODE "wrap" starts the stream
-- again at its end (bare and floor: their requests carry no conversation); MODE "once" stops the
-- thread when its stream is used up, so a patient's message is never sent twice.
-- done() prints one line, "BENCH_RESULT {json}", that bench/run.py reads.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local prefix, mode = args[1], args[2]
  wrap = (mode == "wrap")
  local f = assert(io.open(prefix .. "." .. tid .. ".req", "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos, n = 1, 0
  while pos <= #data do
    local len = tonumber(data:sub(pos, pos + 7))
    pos = pos + 8
    n = n + 1
    reqs[n] = data:sub(pos, pos + len - 1)
    pos = pos + len
  end
  total, idx, sent, wrapped, exhausted = n, 0, 0, 0, 0
  -- wrk calls request() once on thread 0 right after init() to check the script
  -- (script_verify_request); that call must not use up a patient's message.
  verifying = (tid == 0)
  ok, not_ok, failsafe, forbidden = 0, 0, 0, 0
  -- Sent at most once per connection while a used-up thread stops: touches no conversation.
  spare = "GET /healthz HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. tostring(wrk.port) .. "\r\n\r\n"
end

function request()
  if verifying then
    verifying = false
    return reqs[1] or spare
  end
  if idx >= total then
    if not wrap then
      exhausted = 1
      wrk.thread:stop()
      return spare
    end
    idx = 0
    wrapped = wrapped + 1
  end
  idx = idx + 1
  sent = sent + 1
  return reqs[idx]
end

function response(status, headers, body)
  if status == 200 or status == 204 then
    ok = ok + 1
    -- The line's fail-safe reply (telehealth/web/twilio_guard.py) is a 200: count it apart.
    if body and string.find(body, "Otherwise please", 1, true) then
      failsafe = failsafe + 1
    end
  else
    not_ok = not_ok + 1
    if status == 403 then forbidden = forbidden + 1 end
  end
end

function done(summary, latency, requests)
  local per = {}
  local sums = {sent = 0, ok = 0, not_ok = 0, failsafe = 0, forbidden = 0, exhausted = 0, wrapped = 0,
                stream = 0}
  local sent_each = {}
  for _, t in ipairs(threads) do
    table.insert(sent_each, tostring(t:get("sent") or 0))
    sums.sent = sums.sent + (t:get("sent") or 0)
    sums.ok = sums.ok + (t:get("ok") or 0)
    sums.not_ok = sums.not_ok + (t:get("not_ok") or 0)
    sums.failsafe = sums.failsafe + (t:get("failsafe") or 0)
    sums.forbidden = sums.forbidden + (t:get("forbidden") or 0)
    sums.exhausted = sums.exhausted + (t:get("exhausted") or 0)
    sums.wrapped = sums.wrapped + (t:get("wrapped") or 0)
    sums.stream = sums.stream + (t:get("total") or 0)
  end
  local pct = {}
  for _, p in ipairs({50, 75, 90, 95, 99, 99.9}) do
    table.insert(pct, string.format('"%s": %d', tostring(p), latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, "percentiles": {%s}}, ' ..
    '"threads": {"sent": %d, "ok": %d, "not_ok": %d, "failsafe": %d, "forbidden": %d, ' ..
    '"exhausted": %d, "wrapped": %d, "stream": %d, "count": %d, "sent_each": [%s]}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(pct, ", "),
    sums.sent, sums.ok, sums.not_ok, sums.failsafe, sums.forbidden, sums.exhausted, sums.wrapped,
    sums.stream, #threads, table.concat(sent_each, ", ")))
end
