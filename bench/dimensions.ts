// bun run bench:dimensions [-- --quick]: what enrichment and the dimension columns cost, as
// ratios taken in one run. Measures, never asserts; prints a table and writes bench/results.json.
// 1. POST /event sent like a browser (User-Agent, X-Forwarded-For, referrer, UTM tags, screen
//    width; bench/wrk/browser.lua) against plain events with none of those (event.lua), in
//    rotated rounds against one API process, with its CPU time per request from /proc; and the
//    same browser-like events without user_id (cookieless: the API derives the visitor id),
//    whose ratio to the browser-like ones is what the derivation costs.
// 2. The drain of events carrying every dimension (forwarded by a server with each visitor's
//    IP and user agent, so the API enriches them) against plain events, alternating A B A B.
import { parseArgs } from 'node:util'
import { createTestDatabase, createTestRedis, envFor, freePort, spawnBinary, waitForReady } from '../internal/testkit/testkit.ts'
import { drain, type DrainResult, plainBatch } from './drain.ts'
import { record } from './results.ts'
import { median, ratios, runRounds } from './rounds.ts'

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const QUICK = values.quick
const SECONDS = QUICK ? 4 : 10
const ROUNDS = QUICK ? 2 : 3
const DRAIN_EVENTS = QUICK ? 100_000 : 300_000
const TIMESTAMP = new Date().toISOString()
const FORWARD_TOKEN = 'bench-forward'

const db = await createTestDatabase()
const r = await createTestRedis()
const port = await freePort()
const url = `http://127.0.0.1:${port}`
const env = envFor(db, r, {
  PORT: String(port),
  STATS_TOKEN: 'bench',
  QUEUE_MAX_BACKLOG: '100000000',
  LOG_LEVEL: 'warn',
  WORKER_BLOCK_MS: '100',
  TRUST_PROXY: 'true',
  INGEST_FORWARD_TOKEN: FORWARD_TOKEN,
})
const api = spawnBinary('api', env)
await waitForReady(`${url}/readyz`, api)
const emptied = async () => {
  await Bun.sleep(300)
  await r.redis.del(r.queue.stream)
}

const singles = await runRounds(
  [
    { name: 'plain', url: `${url}/event`, script: 'event.lua', pids: () => [api.proc.pid], after: emptied },
    { name: 'browser', url: `${url}/event`, script: 'browser.lua', pids: () => [api.proc.pid], after: emptied },
    { name: 'cookieless', url: `${url}/event`, script: 'browser.lua', env: { NO_USER_ID: '1' }, pids: () => [api.proc.pid], after: emptied },
  ],
  { rounds: ROUNDS, seconds: SECONDS, script: 'event.lua', env: { TIMESTAMP } },
)
for (const run of singles) {
  console.log(
    `round ${run.round} ${run.name.padEnd(10)}: ${Math.round(run.rps)} req/s, p99 ${run.p99Ms} ms, non-2xx ${run.non2xx}, errors ${run.errors}, API CPU ${run.cpuUsPerRequest.toFixed(1)} µs/req, steal ${(100 * run.stealShare).toFixed(1)} %`,
  )
}
const rate = ratios(singles, 'browser', 'plain', (x) => x.rps)
const cpu = ratios(singles, 'browser', 'plain', (x) => x.cpuUsPerRequest)
const cookielessRate = ratios(singles, 'cookieless', 'browser', (x) => x.rps)
const cookielessCpu = ratios(singles, 'cookieless', 'browser', (x) => x.cpuUsPerRequest)

// 2. Drain. The dimension batch: a realistic mix of visitors' user agents and addresses
// (several countries), referrers, UTM tags and a property or two, forwarded by a server.
const agents = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0',
]
const referrers = ['https://www.google.com/', 'https://news.ycombinator.com/item?id=1', 'https://t.co/x', 'https://blog.example.org/a', null]
const plainBody = plainBatch(TIMESTAMP)
const dimsBody = JSON.stringify(
  Array.from({ length: 1000 }, (_, i) => ({
    site_id: `drain-${i % 20}`,
    event_type: i % 10 === 0 ? 'signup' : 'pageview',
    path: `/p/${i % 100}`,
    user_id: `u-${i}`,
    timestamp: TIMESTAMP,
    ip: `${1 + ((i * 37) % 222)}.${(i * 13) % 256}.${(i * 7) % 256}.${1 + (i % 250)}`,
    user_agent: agents[i % agents.length],
    referrer: referrers[i % referrers.length],
    ...(i % 4 === 0 ? { utm_source: 'newsletter', utm_medium: 'email', utm_campaign: `launch-${i % 5}` } : {}),
    screen_width: [390, 1280, 1920][i % 3],
    ...(i % 10 === 0 ? { props: { plan: ['free', 'pro', 'team'][i % 3], seats: i % 50 } } : {}),
  })),
)
const drains: (DrainResult & { round: number; name: string; enriched: number })[] = []
const setup = { db, r, url, env, api }
for (let round = 1; round <= ROUNDS; round++) {
  const order = round % 2 ? ['plain', 'dimensions'] : ['dimensions', 'plain']
  for (const name of order) {
    const result =
      name === 'plain'
        ? await drain(setup, 1, DRAIN_EVENTS, plainBody)
        : await drain(setup, 1, DRAIN_EVENTS, dimsBody, { authorization: `Bearer ${FORWARD_TOKEN}` })
    // Proof that the dimension batches were enriched: stored rows with a country and a browser.
    const [rows] = await db.sql`select count(*) filter (where country is not null and browser is not null)::int as n from events`
    drains.push({ ...result, round, name, enriched: rows!.n })
    console.log(
      `round ${round} drain ${name.padEnd(10)}: ${result.eventsPerS} events/s, worker CPU ${result.cpuUsPerEvent} µs/event; answered 202 ${result.accepted}, stored ${result.stored} (${drains.at(-1)!.enriched} with country and browser), duplicated ${result.duplicated}`,
    )
  }
}
const drainRatio = Array.from({ length: ROUNDS }, (_, i) => {
  const of = (name: string) => drains.find((d) => d.round === i + 1 && d.name === name)!
  return of('dimensions').eventsPerS / of('plain').eventsPerS
})
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ')
const goals = { browser_ge_0_85_plain: median(rate) >= 0.85, drain_ge_0_9_plain: median(drainRatio) >= 0.9 }
console.log('\n| measure | result | goal | met |\n|---|---|---|---|')
console.log(
  `| POST /event like a browser / plain | ${median(rate).toFixed(2)} (rounds ${fmt(rate)}); API CPU per request ${fmt(cpu)}× | ≥ 0.85 | ${goals.browser_ge_0_85_plain ? 'yes' : 'no'} |`,
)
console.log(
  `| POST /event like a browser without user_id (visitor id derived) / with one | ${median(cookielessRate).toFixed(2)} (rounds ${fmt(cookielessRate)}); API CPU per request ${fmt(cookielessCpu)}× | measured | |`,
)
console.log(
  `| drain with every dimension / plain, 1 worker | ${median(drainRatio).toFixed(2)} (rounds ${fmt(drainRatio)}) | ≥ 0.90 | ${goals.drain_ge_0_9_plain ? 'yes' : 'no'} |`,
)
await record(QUICK ? 'dimensions_quick' : 'dimensions', {
  seconds: SECONDS,
  rounds: ROUNDS,
  singles,
  browser_vs_plain: rate,
  cpu_vs_plain: cpu,
  cookieless_vs_browser: cookielessRate,
  cookieless_cpu_vs_browser: cookielessCpu,
  drains,
  drain_vs_plain: drainRatio,
  goals,
})
await api.stop()
await r.cleanup()
await db.drop()
process.exit(0)
