-- BATCH events per request to POST /events (the harness sets the path and BATCH).
local ts = os.getenv("TIMESTAMP") or "2025-11-14T10:00:00Z"
local n = tonumber(os.getenv("BATCH") or "100")
local parts = {}
for i = 1, n do
  parts[i] = '{"site_id":"bench-site-' .. (i % 10) .. '","event_type":"pageview","path":"/p/' .. (i % 50) ..
    '","user_id":"u-' .. i .. '","timestamp":"' .. ts .. '"}'
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "[" .. table.concat(parts, ",") .. "]"
