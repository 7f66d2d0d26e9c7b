-- One event per request, like a browser beacon, each with its own event_id as a retrying
-- client sends it. TIMESTAMP comes from the harness (a recent time, so it passes validation);
-- ORIGIN, when set, is sent as the Origin header, as a browser page sends it.
local ts = os.getenv("TIMESTAMP") or "2025-11-14T10:00:00Z"
local origin = os.getenv("ORIGIN")
local run = os.getenv("RUN_ID") or string.format("%08x", os.time() % 0xffffffff)
local threads = 0
local counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local head, tail
function init(args)
  head = '{"site_id":"bench-site","event_type":"pageview","path":"/pricing","user_id":"u-123","timestamp":"' .. ts .. '","event_id":"' .. run .. string.format("-%04x-4000-8000-", tid or 0)
  tail = '"}'
end

local headers = { ["Content-Type"] = "application/json", ["Origin"] = origin }

function request()
  counter = counter + 1
  return wrk.format("POST", nil, headers, head .. string.format("%012x", counter) .. tail)
end
