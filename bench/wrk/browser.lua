-- One event per request as a browser's tracker sends it: a real browser's User-Agent, the
-- client address in X-Forwarded-For (the API runs with TRUST_PROXY), and a referrer, UTM
-- tags and the screen width in the body. Each request has its own event_id; user agents,
-- addresses and referrers vary as they do across a site's visitors. With NO_USER_ID=1 the
-- events carry no user_id, as the cookieless tracker sends them: the API derives one.
local user = os.getenv("NO_USER_ID") == "1" and "" or '"user_id":"u-123",'
local ts = os.getenv("TIMESTAMP") or "2025-11-14T10:00:00Z"
local run = os.getenv("RUN_ID") or string.format("%08x", os.time() % 0xffffffff)
local threads = 0
local counter = 0

local agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
  "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
}
local referrers = {
  "https://www.google.com/", "https://www.bing.com/search?q=sluice", "https://news.ycombinator.com/item?id=1",
  "https://www.facebook.com/", "https://t.co/abc", "https://duckduckgo.com/", "https://blog.example.org/post/42",
  "https://www.reddit.com/r/analytics/", "", "",
}
local utms = {
  '', '', '', '', '"utm_source":"newsletter","utm_medium":"email","utm_campaign":"launch",',
  '"utm_source":"twitter","utm_medium":"social",', '"utm_source":"google","utm_medium":"cpc","utm_campaign":"brand","utm_term":"analytics",',
}
local widths = { 390, 412, 768, 1280, 1440, 1920 }

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local head, tail
function init(args)
  math.randomseed(os.time() + (tid or 0))
  head = '{"site_id":"bench-site","event_type":"pageview","path":"/pricing",' .. user .. '"timestamp":"' .. ts .. '",'
  tail = string.format('"event_id":"%s-%04x-4000-8000-', run, tid or 0)
end

function request()
  counter = counter + 1
  local ref = referrers[math.random(#referrers)]
  local body = head .. (ref ~= "" and ('"referrer":"' .. ref .. '",') or "") .. utms[math.random(#utms)]
    .. '"screen_width":' .. widths[math.random(#widths)] .. ',' .. tail .. string.format("%012x", counter) .. '"}'
  local ip = string.format("%d.%d.%d.%d", math.random(1, 223), math.random(0, 255), math.random(0, 255), math.random(1, 254))
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = agents[math.random(#agents)],
    ["X-Forwarded-For"] = ip,
    ["Origin"] = "https://bench-site.example",
  }, body)
end
