// @ts-check
// k6 load test for Sluice's ingestion API.
//   k6 run loadtest.js                                   # against http://localhost:8080
//   k6 run -e BASE_URL=http://host:8080 -e RATE=5000 loadtest.js
//   bun run bench:k6                                     # the whole pipeline, then stored == accepted
// Scenarios: steady single events at a constant rate, a spike that ramps up and back
// down, and batches of BATCH_SIZE events. Thresholds fail the run on latency (of expected
// responses only), errors or dropped iterations. The defaults are sized for a 2-core
// machine that also runs k6 itself, the API, Redis, Postgres and a worker
// (docs/benchmarks.md); raise RATE on a bigger one.
import { check } from 'k6'
import http from 'k6/http'
import { Counter } from 'k6/metrics'

const BASE_URL = __ENV.BASE_URL || 'http://localhost:8080'
const RATE = Number(__ENV.RATE || 500)
const SPIKE_RATE = Number(__ENV.SPIKE_RATE || RATE * 3)
const BATCH_SIZE = Number(__ENV.BATCH_SIZE || 100)
const DURATION = __ENV.DURATION || '1m'
const SITES = Number(__ENV.SITES || 20)
const USERS = Number(__ENV.USERS || 5000)
const PATHS = ['/', '/pricing', '/docs', '/blog', '/signup', '/login', '/about', '/changelog']
const TYPES = ['pageview', 'pageview', 'pageview', 'click', 'signup']
// Browsers' user agents: k6's own ("Grafana k6/…") is a crawler's to the API, which answers
// its events 202 like any other and does not store them, so stored would never equal accepted.
const USER_AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
]

/** Events answered 202: what the harness compares with the rows stored afterwards. */
const accepted = new Counter('accepted_events')

/** @type {import('k6/options').Options} */
export const options = {
  discardResponseBodies: false,
  scenarios: {
    steady: {
      executor: 'constant-arrival-rate',
      exec: 'single',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      // Allocated up front: starting VUs mid-run costs k6 time and drops iterations.
      preAllocatedVUs: 100,
      maxVUs: 500,
    },
    spike: {
      executor: 'ramping-arrival-rate',
      exec: 'single',
      startTime: DURATION,
      startRate: RATE,
      timeUnit: '1s',
      preAllocatedVUs: 200,
      maxVUs: 1000,
      stages: [
        { target: SPIKE_RATE, duration: '10s' },
        { target: SPIKE_RATE, duration: '20s' },
        { target: RATE, duration: '10s' },
      ],
    },
    batch: {
      executor: 'constant-arrival-rate',
      exec: 'batch',
      rate: Math.max(1, Math.floor(RATE / BATCH_SIZE)),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 10,
      maxVUs: 100,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    checks: ['rate>0.999'],
    // An iteration k6 could not start on time is load that was never sent.
    dropped_iterations: ['count<1'],
    // Latency of expected (2xx) answers only: a failed request must not count as a fast one.
    'http_req_duration{scenario:steady,expected_response:true}': ['p(95)<10', 'p(99)<25'],
    'http_req_duration{scenario:spike,expected_response:true}': ['p(95)<25', 'p(99)<50'],
    'http_req_duration{scenario:batch,expected_response:true}': ['p(95)<50', 'p(99)<100'],
  },
}

/** @param {number} n */
const pick = (n) => Math.floor(Math.random() * n)
const headers = () => ({ 'Content-Type': 'application/json', 'User-Agent': USER_AGENTS[pick(USER_AGENTS.length)] })

/** A random v4 UUID, so a retried request would be stored once. */
function uuid() {
  const hex = '0123456789abcdef'
  let s = ''
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) s += '-'
    else if (i === 14) s += '4'
    else if (i === 19) s += hex[8 + pick(4)]
    else s += hex[pick(16)]
  }
  return s
}

function randomEvent() {
  return {
    event_id: uuid(),
    site_id: `site-${pick(SITES)}`,
    event_type: TYPES[pick(TYPES.length)],
    path: PATHS[pick(PATHS.length)],
    user_id: `u-${pick(USERS)}`,
    timestamp: new Date().toISOString(),
  }
}

export function single() {
  const res = http.post(`${BASE_URL}/event`, JSON.stringify(randomEvent()), { headers: headers(), tags: { name: 'POST /event' } })
  if (res.status === 202) accepted.add(1)
  check(res, { 'status is 202': (r) => r.status === 202 })
}

export function batch() {
  const events = Array.from({ length: BATCH_SIZE }, randomEvent)
  const res = http.post(`${BASE_URL}/events`, JSON.stringify(events), { headers: headers(), tags: { name: 'POST /events' } })
  if (res.status === 202 || res.status === 207) accepted.add(Number(res.json('accepted')) || 0)
  check(res, {
    'status is 202': (r) => r.status === 202,
    'every event accepted': (r) => r.status === 202 && r.json('accepted') === BATCH_SIZE,
  })
}
