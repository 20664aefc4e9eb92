-- wrk script for bench/backend_singles.py: one event per request, every request a new event.
--   wrk -t1 -c32 -d20s -s bench/wrk_singles.lua http://127.0.0.1:PORT -- MODE TOKEN TAG
-- MODE legacy: the old agents' writes in turn (a snapshot post, a build log, a run log), as the old
--              filemon, procmon and notebook hook send them (one event per request, no batching);
-- MODE v1:     POST /api/v1/events with a one-event array (a save, a compile or a run in turn).
-- 2,000 students (40 classes of 50), each request the next student, so each student's events arrive in
-- time order, about once a second at 2,000 requests/s. TAG makes the events of one run differ from
-- another's. done() prints one JSON line that bench/backend_singles.py reads.

local mode, token, tag
local counter = 0
thread_no = 0 -- set per thread by setup()

function setup(thread)
  thread:set("thread_no", thread_no)
  thread_no = thread_no + 1
end

function init(args)
  mode, token, tag = args[1], args[2], args[3]
  counter = 0
end

-- Student n of 2,000 (class n % 40). Each thread visits all of them in turn, so a student's requests are
-- 2,000 apart and arrive in time order, as one student's saves, compiles and runs do.
local function student(n)
  return "c" .. tostring(n % 40), tostring(202400000 + math.floor(n / 40))
end

-- Whole seconds: a student's next request comes at least a second later at up to 2,000 requests/s, so its
-- events never go back in time (the old filemon's snapshot times are whole seconds too).
local function iso_now()
  return os.date("!%Y-%m-%dT%H:%M:%S", os.time()) .. ".000000"
end

local function legacy(i, n)
  local course, sid = student(n)
  local base = "/api/" .. course .. "-1/hw1/" .. sid
  local kind = i % 3
  local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  if kind == 0 then
    -- the old filemon: the file's size in the body, the save time (UTC, seconds) in the path
    local path = base .. "/main" .. tostring(i % 5) .. "_" .. tag .. ".c/" .. os.date("!%Y%m%d_%H%M%S", os.time())
    return wrk.format("POST", path, headers, string.format('{"bytes": %d}', 100 + (i * 7) % 50000))
  end
  local body
  if kind == 1 then
    body = string.format(
      '{"timestamp": "%s", "exit_code": %d, "cmdline": "gcc -o main main.c -D%s_%d", '
        .. '"cwd": "/home/coder/project/hw1", "binary_path": "/usr/bin/x86_64-linux-gnu-gcc-12", '
        .. '"target_path": "/home/coder/project/hw1/main.c"}',
      iso_now(), i % 2, tag, i)
    return wrk.format("POST", base .. "/logs/build", headers, body)
  end
  body = string.format(
    '{"timestamp": "%s", "exit_code": 0, "cmdline": "./main %s_%d", "cwd": "/home/coder/project/hw1", '
      .. '"target_path": "/home/coder/project/hw1/main", "process_type": "binary"}',
    iso_now(), tag, i)
  return wrk.format("POST", base .. "/logs/run", headers, body)
end

local function v1(i, n)
  local course, sid = student(n)
  local ts = iso_now() .. "Z"
  local common = string.format(
    '"event_id": "bench-%s-%010d", "timestamp": "%s", "node": "node-%d", "course": "%s", "section": "1", '
      .. '"student_id": "%s", "assignment": "hw1"',
    tag, i, ts, i % 50, course, sid)
  local kind = i % 3
  local event
  if kind == 0 then
    event = string.format(
      '{%s, "type": "file.save", "source": "filemon", "path": "main%d.c", "sha256": "%064x", "size": %d}',
      common, i % 5, i, 100 + (i * 7) % 50000)
  elseif kind == 1 then
    event = string.format(
      '{%s, "type": "process.compile", "source": "procmon", "path": "main.c", '
        .. '"argv": ["gcc", "-o", "main", "main.c"], "cwd": ".", "exit_code": %d, "started_at": "%s", '
        .. '"ended_at": "%s", "compiler": "gcc", "sources": ["main.c"], "output": "main"}',
      common, i % 2, ts, ts)
  else
    event = string.format(
      '{%s, "type": "process.run", "source": "procmon", "path": "main", "argv": ["./main"], "cwd": ".", '
        .. '"exit_code": 0, "started_at": "%s", "ended_at": "%s", "kind": "binary", "target": "main"}',
      common, ts, ts)
  end
  local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  return wrk.format("POST", "/api/v1/events", headers, "[" .. event .. "]")
end

function request()
  local i = counter * 16 + thread_no -- unique across up to 16 threads: makes every event new
  local n = (counter + thread_no * 997) % 2000
  counter = counter + 1
  if mode == "legacy" then
    return legacy(i, n)
  end
  return v1(i, n)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "non2xx": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration / 1e6, errors.status, errors.connect, errors.read, errors.write,
    errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
