-- One event per request from a browser page: event.lua with an Origin header, which the
-- API checks against the site's registered domains. TIMESTAMP comes from the harness.
local ts = os.getenv("TIMESTAMP") or "2025-11-14T10:00:00Z"
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

function request()
  counter = counter + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["Origin"] = "https://www.bench.example" }, head .. string.format("%012x", counter) .. tail)
end
