// bun run bench:registry [-- --quick]: what the sites registry check costs single-event
// ingest, as ratios taken in one run. Two API processes run side by side, each on its own
// database and stream, and take turns under the same wrk load (rounds A B, B A, A B, B A):
// A without the registry (SITES_REGISTRY=false, nothing registered: the check is one empty
// Map lookup), B with it (SITES_REGISTRY=true and 1000 registered sites, bench-site among
// them with domains), six rounds of 10 s each. First plain server events, then browser-like ones with an Origin
// header, which B also matches against the site's domains. Rate and CPU per request (from
// /proc) of each API process. Before that, the check alone in this process, in ns per
// event: steadier than whole-request figures on a shared host. Measures, never asserts;
// writes bench/results.json.
import { parseArgs } from 'node:util'
import { createSiteCheck } from '../internal/http/site-check.ts'
import { silentLogger } from '../internal/log/log.ts'
import { createRegistry } from '../internal/sites/registry.ts'
import { createSites } from '../internal/sites/sites.ts'
import { createTestDatabase, createTestRedis, envFor, freePort, spawnBinary, waitForReady } from '../internal/testkit/testkit.ts'
import { record } from './results.ts'
import { median, ratios, runRounds, type Run } from './rounds.ts'

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const QUICK = values.quick
const SECONDS = QUICK ? 4 : 10
const ROUNDS = QUICK ? 2 : 6
const SITES = 1000
const TIMESTAMP = new Date().toISOString()

const [dbA, dbB] = await Promise.all([createTestDatabase(), createTestDatabase()])
const r = await createTestRedis()
const sites = createSites(dbB.sql)
await sites.add({ site_id: 'bench-site', domains: ['bench.example', 'bench-shop.example'], timezone: 'Europe/Berlin' })
for (let i = 1; i < SITES; i++) await sites.add({ site_id: `site-${i}`, domains: [`site-${i}.example`] })

// The check alone: the function ingest calls for every event, on the same registry, timed
// over millions of calls (best of five), against the same call without a registry.
const registry = createRegistry({ sql: dbB.sql, log: silentLogger() })
await registry.refresh()
const checks = {
  'no registry': [createSiteCheck(null), null],
  'registry, server event': [createSiteCheck(registry, { requireRegistered: true }), null],
  'registry, browser event (Origin)': [createSiteCheck(registry, { requireRegistered: true }), 'https://www.bench.example'],
} as const
const nsPerCheck: Record<string, number> = {}
for (const [name, [check, origin]] of Object.entries(checks)) {
  const N = 2_000_000
  let best = Number.POSITIVE_INFINITY
  for (let round = 0; round < 5; round++) {
    const started = Bun.nanoseconds()
    for (let i = 0; i < N; i++) if (check('bench-site', origin) !== null) throw new Error('refused')
    best = Math.min(best, (Bun.nanoseconds() - started) / N)
  }
  nsPerCheck[name] = best
  console.log(`check alone, ${name}: ${best.toFixed(1)} ns per event`)
}

const [portA, portB] = await Promise.all([freePort(), freePort()])
const common = { STATS_TOKEN: 'bench', QUEUE_MAX_BACKLOG: '100000000', LOG_LEVEL: 'warn' }
const streams = { A: r.queue.stream, B: `${r.queue.stream}:b` }
const apiA = spawnBinary('api', envFor(dbA, r, { ...common, PORT: String(portA), SITES_REGISTRY: 'false' }))
const apiB = spawnBinary('api', envFor(dbB, r, { ...common, PORT: String(portB), SITES_REGISTRY: 'true', QUEUE_STREAM: streams.B }))
await Promise.all([waitForReady(`http://127.0.0.1:${portA}/readyz`, apiA), waitForReady(`http://127.0.0.1:${portB}/readyz`, apiB)])
const emptied = (stream: string) => async () => {
  await Bun.sleep(300)
  await r.redis.del(stream)
}

const phases: Record<string, { runs: Run[]; rate: number[]; cpu: number[] }> = {}
// event.lua as a server sends it (no Origin), then as a browser page does (ORIGIN set).
for (const [script, origin] of [
  ['event.lua', null],
  ['event.lua with Origin', 'https://www.bench.example'],
] as const) {
  const runs = await runRounds(
    [
      { name: 'A', url: `http://127.0.0.1:${portA}/event`, pids: () => [apiA.proc.pid], after: emptied(streams.A) },
      { name: 'B', url: `http://127.0.0.1:${portB}/event`, pids: () => [apiB.proc.pid], after: emptied(streams.B) },
    ],
    { rounds: ROUNDS, seconds: SECONDS, script: 'event.lua', env: { TIMESTAMP, ...(origin ? { ORIGIN: origin } : {}) } },
  )
  for (const run of runs) {
    console.log(
      `${script} round ${run.round} ${run.name === 'A' ? 'without registry' : 'with registry   '}: ${Math.round(run.rps)} req/s, p99 ${run.p99Ms} ms, non-2xx ${run.non2xx}, errors ${run.errors}, API CPU ${run.cpuUsPerRequest.toFixed(2)} µs/req, steal ${(100 * run.stealShare).toFixed(1)} %`,
    )
  }
  phases[script] = { runs, rate: ratios(runs, 'B', 'A', (x) => x.rps), cpu: ratios(runs, 'B', 'A', (x) => x.cpuUsPerRequest) }
}

const fmt = (xs: number[]) => xs.map((x) => x.toFixed(3)).join(', ')
const of = (runs: Run[], name: string, f: (r: Run) => number) => median(runs.filter((x) => x.name === name).map(f))
console.log('\n| events | without registry | with registry | rate with / without, per round | median | CPU per request with / without, per round | median |')
console.log('|---|---|---|---|---|---|---|')
for (const [script, p] of Object.entries(phases)) {
  console.log(
    `| ${script === 'event.lua' ? 'server (no Origin)' : 'browser (Origin, domains checked)'} | ${Math.round(of(p.runs, 'A', (x) => x.rps))} req/s, ${of(p.runs, 'A', (x) => x.cpuUsPerRequest).toFixed(1)} µs | ${Math.round(of(p.runs, 'B', (x) => x.rps))} req/s, ${of(p.runs, 'B', (x) => x.cpuUsPerRequest).toFixed(1)} µs | ${fmt(p.rate)} | **${median(p.rate).toFixed(3)}** | ${fmt(p.cpu)} | **${median(p.cpu).toFixed(3)}** |`,
  )
}

const apiCpuNs = median(phases['event.lua']!.runs.map((x) => x.cpuUsPerRequest)) * 1000
for (const [name, ns] of Object.entries(nsPerCheck)) {
  console.log(`check alone, ${name}: ${ns.toFixed(1)} ns = ${((100 * ns) / apiCpuNs).toFixed(3)} % of the API's median CPU per request`)
}

await record(QUICK ? 'registry_quick' : 'registry', {
  ns_per_check: nsPerCheck,
  seconds: SECONDS,
  rounds: ROUNDS,
  sites: SITES,
  phases: Object.fromEntries(Object.entries(phases).map(([k, p]) => [k, { rate_ratio: p.rate, cpu_ratio: p.cpu, runs: p.runs }])),
})
await Promise.all([apiA.stop(), apiB.stop()])
await r.cleanup()
await Promise.all([dbA.drop(), dbB.drop()])
process.exit(0)
