-- One event per request, like a browser beacon. TIMESTAMP comes from the harness (a
-- recent time, so it passes validation); the API assigns each event its id.
local ts = os.getenv("TIMESTAMP") or "2025-11-14T10:00:00Z"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"site_id":"bench-site","event_type":"pageview","path":"/pricing","user_id":"u-123","timestamp":"' .. ts .. '"}'
