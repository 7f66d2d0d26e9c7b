// bun run bench [-- --quick]: the ingestion benchmark. Compares the API with a bare Bun.serve
// and a naive server in rotated rounds (rate, latency, CPU per request from /proc), then
// batches, 1 against 2 API processes on one port, the drain against Postgres alone,
// freshness and peak RSS. Own database and stream; prints a table and writes
// bench/results.json. Measures, never asserts.
import { parseArgs } from 'node:util'
import { createTestDatabase, createTestRedis, envFor, eventually, freePort, spawnBinary, waitForReady, type Binary } from '../internal/testkit/testkit.ts'
import { drain, plainBatch, type DrainResult } from './drain.ts'
import { record } from './results.ts'
import { peakRssMb } from './proc.ts'
import { median, ratios, runRounds, type Run } from './rounds.ts'
import { wrk, type WrkResult } from './wrk.ts'

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const QUICK = values.quick
const SECONDS = QUICK ? 4 : 10
const ROUNDS = 3
const DRAIN_EVENTS = QUICK ? 200_000 : 1_000_000
const FRESH_RATE = 10_000
const FRESH_SECONDS = QUICK ? 5 : 15
const TIMESTAMP = new Date().toISOString()

const line = (s: string) => console.log(s)
/** The API's peak RSS (VmHWM, which only grows) after each phase: where it rises is what set the peak. */
const apiPeakAfter: Record<string, number> = {}

// 1. Single events, in rounds: a bare Bun.serve (await the body, answer 202), the naive
// server (Hono + valibot + one awaited XADD), and the API, each under the same wrk load.
const db = await createTestDatabase()
const r = await createTestRedis()
const redisPid = Number(/process_id:(\d+)/.exec(await r.redis.info('server'))?.[1])
const [basePort, naivePort, apiPort] = await Promise.all([freePort(), freePort(), freePort()])
const url = `http://127.0.0.1:${apiPort}`
const naiveStream = `${r.queue.stream}:naive`
const baseline = Bun.spawn(['bun', `${import.meta.dir}/baseline.ts`, String(basePort)], { stdout: 'ignore', stderr: 'inherit' })
const naive = Bun.spawn(['bun', `${import.meta.dir}/naive.ts`, String(naivePort), r.url, naiveStream], { stdout: 'ignore', stderr: 'inherit' })
const env = envFor(db, r, { PORT: String(apiPort), STATS_TOKEN: 'bench', QUEUE_MAX_BACKLOG: '100000000', LOG_LEVEL: 'warn', WORKER_BLOCK_MS: '100' })
// spawnBinary runs each binary as its package.json script does (the API with --smol).
const api = spawnBinary('api', env)
await waitForReady(`${url}/readyz`, api)
for (const port of [basePort, naivePort]) {
  await eventually(() =>
    fetch(`http://127.0.0.1:${port}/event`, { method: 'POST', body: '{}' }).then(
      () => true,
      () => false,
    ),
  )
}
const emptied = (stream: string) => async () => {
  await Bun.sleep(300)
  await r.redis.del(stream)
}
const singles = await runRounds(
  [
    { name: 'bare', url: `http://127.0.0.1:${basePort}/event`, pids: () => [baseline.pid] },
    { name: 'naive', url: `http://127.0.0.1:${naivePort}/event`, pids: () => [naive.pid], shared: { redis: redisPid }, after: emptied(naiveStream) },
    { name: 'sluice', url: `${url}/event`, pids: () => [api.proc.pid], shared: { redis: redisPid }, after: emptied(r.queue.stream) },
  ],
  { rounds: ROUNDS, seconds: SECONDS, script: 'event.lua', env: { TIMESTAMP } },
)
baseline.kill()
naive.kill()
apiPeakAfter['single events'] = peakRssMb(api.proc.pid)
for (const run of singles) {
  line(
    `round ${run.round} ${run.name.padEnd(6)}: ${Math.round(run.rps)} req/s, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, non-2xx ${run.non2xx}, errors ${run.errors}, server CPU ${run.cpuUsPerRequest.toFixed(1)} µs/req${run.sharedUsPerRequest.redis !== undefined ? `, redis ${run.sharedUsPerRequest.redis.toFixed(1)} µs/req` : ''}, steal ${(100 * run.stealShare).toFixed(1)} %`,
  )
}
const of = (name: string, f: (run: Run) => number) => median(singles.filter((x) => x.name === name).map(f))
const single = {
  runs: singles,
  rps: { bare: of('bare', (x) => x.rps), naive: of('naive', (x) => x.rps), sluice: of('sluice', (x) => x.rps) },
  p99Ms: { bare: of('bare', (x) => x.p99Ms), naive: of('naive', (x) => x.p99Ms), sluice: of('sluice', (x) => x.p99Ms) },
  cpuUsPerRequest: { bare: of('bare', (x) => x.cpuUsPerRequest), naive: of('naive', (x) => x.cpuUsPerRequest), sluice: of('sluice', (x) => x.cpuUsPerRequest) },
  vsNaive: ratios(singles, 'sluice', 'naive', (x) => x.rps),
  vsBare: ratios(singles, 'sluice', 'bare', (x) => x.rps),
  cpuVsBare: ratios(singles, 'sluice', 'bare', (x) => x.cpuUsPerRequest),
  non2xx: singles.filter((x) => x.name === 'sluice').reduce((n, x) => n + x.non2xx + x.errors, 0),
}
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ')
line(
  `POST /event, medians of ${ROUNDS} rounds: sluice ${Math.round(single.rps.sluice)}, naive ${Math.round(single.rps.naive)}, bare ${Math.round(single.rps.bare)} req/s; per round sluice/naive ${fmt(single.vsNaive)}, sluice/bare ${fmt(single.vsBare)}; CPU per request sluice/bare ${fmt(single.cpuVsBare)}`,
)

// 2-3. The API alone (no worker, so the stream only grows).
/** Clears the stream once requests still in flight when wrk stopped have landed. */
const clear = async () => {
  await Bun.sleep(1000)
  await r.redis.del(r.queue.stream)
}
await clear()
const batches: Record<string, WrkResult & { eventsPerS: number }> = {}
for (const n of [100, 1000]) {
  const w = await wrk(`${url}/events`, { script: 'batch.lua', seconds: SECONDS, env: { TIMESTAMP, BATCH: String(n) } })
  batches[n] = { ...w, eventsPerS: Math.round(((w.requests - w.non2xx) * n) / SECONDS) }
  line(`POST /events x${n}: ${batches[n]!.eventsPerS} events/s accepted (${Math.round(w.rps)} req/s, p99 ${w.p99Ms} ms, non-2xx ${w.non2xx})`)
  apiPeakAfter[`batches of ${n}`] = peakRssMb(api.proc.pid)
  await clear()
}

// 4. Several API processes on one port (reusePort): 1 against 2, in rounds.
let second: Binary | null = null
const scaling = await runRounds(
  [
    { name: '1 process', url: `${url}/event`, pids: () => [api.proc.pid], after: clear },
    {
      name: '2 processes',
      url: `${url}/event`,
      pids: () => [api.proc.pid, second!.proc.pid],
      before: async () => {
        second = spawnBinary('api', env)
        await Bun.sleep(1500) // its listener joins the port group
      },
      after: async () => {
        await second?.stop()
        await clear()
      },
    },
  ],
  { rounds: ROUNDS, seconds: SECONDS, script: 'event.lua', env: { TIMESTAMP } },
)
const scale = { runs: scaling, ratio: ratios(scaling, '2 processes', '1 process', (x) => x.rps) }
apiPeakAfter['1 and 2 processes'] = peakRssMb(api.proc.pid)
for (const run of scaling)
  line(`round ${run.round} ${run.name}: ${Math.round(run.rps)} req/s, p99 ${run.p99Ms} ms, CPU ${run.cpuUsPerRequest.toFixed(1)} µs/req`)
line(`API scaling 1 → 2 processes on one port, per round: ${fmt(scale.ratio)}`)

// 5. Drain against Postgres alone: the drain with 1 worker and the worker's statement from
// the harness, in rounds A B, B A, each from empty tables after a checkpoint (so no phase
// pays for the one before); then 2 workers, and Postgres alone without event_ids.
const drainBody = plainBatch(TIMESTAMP)
async function drainWith(workers: number) {
  await db.sql`checkpoint`
  const result = await drain({ db, r, url, env, api }, workers, DRAIN_EVENTS, drainBody)
  line(
    `drain, ${workers} worker(s): ${result.eventsPerS} events/s (${Math.round(result.eventsPerS * result.seconds)} events in ${result.seconds} s after a ${result.startupS} s start-up); answered 202 ${result.accepted}, stored ${result.stored}, duplicated ${result.duplicated}`,
  )
  return result
}

/**
 * Postgres alone, on the same tables: the worker's own statement (store.insertEventsJson,
 * batches of 2000, two at once) from a process of its own, as the worker is
 * (bench/pg-alone.ts), and the same without event_ids (what the exactly-once check costs).
 */
async function postgresAlone(withDedup: boolean) {
  await db.sql`truncate events, event_ids`
  await db.sql`checkpoint`
  const proc = Bun.spawn(['bun', `${import.meta.dir}/pg-alone.ts`, db.url, String(DRAIN_EVENTS), ...(withDedup ? [] : ['--plain'])], {
    stdout: 'pipe',
    stderr: 'inherit',
  })
  const out = await new Response(proc.stdout).text()
  if ((await proc.exited) !== 0) throw new Error('bench/pg-alone.ts failed')
  const result = JSON.parse(out) as { events: number; seconds: number; eventsPerS: number }
  line(`Postgres alone, the worker's statement${withDedup ? '' : ' without event_ids'}: ${result.eventsPerS} events/s`)
  return result
}
const drainRounds: { drain: DrainResult; pg: Awaited<ReturnType<typeof postgresAlone>> }[] = []
for (const drainFirst of [true, false]) {
  const drained = drainFirst ? await drainWith(1) : null
  const pg = await postgresAlone(true)
  drainRounds.push({ drain: drained ?? (await drainWith(1)), pg })
}
const drainRatios = drainRounds.map((x) => x.drain.eventsPerS / x.pg.eventsPerS)
// The round with the lower ratio: the goal must hold in both.
const drainRound = drainRounds[drainRatios.indexOf(Math.min(...drainRatios))]!
const drain1 = drainRound.drain
const pgAlone = drainRound.pg
const drain2 = await drainWith(2)
const drains = [...drainRounds.map((x) => x.drain), drain2]
const pgNoDedup = await postgresAlone(false)
line(`drain with 1 worker against Postgres alone, per round: ${fmt(drainRatios)}`)
apiPeakAfter['drains (the API fills the stream)'] = peakRssMb(api.proc.pid)

const rowCount = async () => (await db.sql`select count(*)::int as n, count(distinct event_id)::int as d from events`)[0] as { n: number; d: number }

// 6. Freshness: a steady 10k events/s (batches of 50, each event with its own id) with one
// worker running; the time from each 202 to the row's insert.
await db.sql`truncate events, event_ids`
await r.redis.del(r.queue.stream)
const worker = spawnBinary('worker', { ...env, WORKER_NAME: 'fresh' })
await Bun.sleep(1000)
const ackedAt = new Map<string, number>()
const per = 50
const interval = (1000 * per) / FRESH_RATE
const until = Date.now() + FRESH_SECONDS * 1000
const inflight: Promise<void>[] = []
for (let next = performance.now(); Date.now() < until; next += interval) {
  const wait = next - performance.now()
  if (wait > 0) await Bun.sleep(wait)
  const events = Array.from({ length: per }, () => ({
    event_id: crypto.randomUUID(),
    site_id: 'fresh',
    event_type: 'pageview',
    path: '/',
    timestamp: new Date().toISOString(),
  }))
  inflight.push(
    fetch(`${url}/events`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } }).then(async (res) => {
      await res.arrayBuffer()
      const t = Date.now()
      if (res.status === 202) for (const e of events) ackedAt.set(e.event_id, t)
    }),
  )
}
await Promise.all(inflight)
await eventually(async () => (await rowCount()).n >= ackedAt.size, { timeoutMs: 60_000 })
const rows = await db.sql`select event_id::text as id, extract(epoch from inserted_at) * 1000 as at from events`
const lags = rows.map((row) => Math.max(0, (row.at as number) - (ackedAt.get(row.id as string) ?? row.at))).sort((a, b) => a - b)
const pct = (p: number) => Math.round(lags[Math.min(lags.length - 1, Math.floor(p * lags.length))] ?? Number.NaN)
const stored = new Set(rows.map((row) => row.id as string))
const freshness = {
  rate: FRESH_RATE,
  seconds: FRESH_SECONDS,
  accepted: ackedAt.size,
  stored: rows.length,
  lost: [...ackedAt.keys()].filter((id) => !stored.has(id)).length,
  duplicated: rows.length - stored.size,
  p50Ms: pct(0.5),
  p99Ms: pct(0.99),
  maxMs: pct(1),
}
line(
  `freshness at ${FRESH_RATE} events/s: p50 ${freshness.p50Ms} ms, p99 ${freshness.p99Ms} ms, max ${freshness.maxMs} ms; ${freshness.accepted} answered 202, ${freshness.stored} stored, ${freshness.lost} lost, ${freshness.duplicated} duplicated`,
)
const workerPeak = Math.max(peakRssMb(worker.proc.pid), ...drains.map((d) => d.peakRssMb))
await worker.stop()

const apiRss = peakRssMb(api.proc.pid)
apiPeakAfter.freshness = apiRss
line(`peak RSS across every phase: api ${apiRss} MB, worker ${workerPeak} MB`)
line(
  `the API's peak RSS after each phase: ${Object.entries(apiPeakAfter)
    .map(([phase, mb]) => `${phase} ${mb} MB`)
    .join(', ')}`,
)
const goals = {
  single_vs_naive_ge_1_5: median(single.vsNaive) >= 1.5,
  single_vs_bare_ge_0_7: median(single.vsBare) >= 0.7,
  single_p99_lt_5ms: single.p99Ms.sluice < 5,
  single_cpu_le_1_5x_bare: median(single.cpuVsBare) <= 1.5,
  batch_100_ge_250k: batches[100]!.eventsPerS >= 250_000,
  drain_1_worker_ge_0_8_postgres_alone: Math.min(...drainRatios) >= 0.8,
  freshness_p99_le_1s: freshness.p99Ms <= 1000,
  api_rss_le_150mb: apiRss <= 150,
  no_loss_no_duplicates: drains.every((d) => d.stored === d.accepted && d.duplicated === 0) && freshness.lost === 0 && freshness.duplicated === 0,
}
console.log('\n| measure | result | goal | met |\n|---|---|---|---|')
const row = (m: string, v: string, g: string, ok: boolean) => console.log(`| ${m} | ${v} | ${g} | ${ok ? 'yes' : 'no'} |`)
row('POST /event vs naive (median of rounds)', `${median(single.vsNaive).toFixed(2)}× (rounds ${fmt(single.vsNaive)})`, '≥ 1.5×', goals.single_vs_naive_ge_1_5)
row(
  'POST /event vs bare Bun.serve',
  `${median(single.vsBare).toFixed(2)}× (rounds ${fmt(single.vsBare)}); ${Math.round(single.rps.sluice)} vs ${Math.round(single.rps.bare)} req/s`,
  '≥ 0.7×',
  goals.single_vs_bare_ge_0_7,
)
row(
  'POST /event p99 at 50 connections',
  `${single.p99Ms.sluice} ms (bare ${single.p99Ms.bare}, naive ${single.p99Ms.naive})`,
  '< 5 ms',
  goals.single_p99_lt_5ms,
)
row(
  'API CPU per event vs bare per request',
  `${single.cpuUsPerRequest.sluice.toFixed(1)} vs ${single.cpuUsPerRequest.bare.toFixed(1)} µs = ${median(single.cpuVsBare).toFixed(2)}× (naive ${single.cpuUsPerRequest.naive.toFixed(1)} µs)`,
  '≤ 1.5×',
  goals.single_cpu_le_1_5x_bare,
)
row(
  'POST /events (100 and 1000 per batch)',
  `${batches[100]!.eventsPerS} and ${batches[1000]!.eventsPerS} events/s`,
  '≥ 250,000 at 100',
  goals.batch_100_ge_250k,
)
row('API scaling, 1 → 2 processes on one port', `${median(scale.ratio).toFixed(2)}× (rounds ${fmt(scale.ratio)})`, 'measured', true)
row('drain, 1 worker / 2 workers', `${drain1.eventsPerS} / ${drain2.eventsPerS} events/s`, '', true)
row(
  'drain vs Postgres alone (same statement)',
  `${drain1.eventsPerS} / ${pgAlone.eventsPerS} = ${(drain1.eventsPerS / pgAlone.eventsPerS).toFixed(2)} (rounds ${fmt(drainRatios)}); without event_ids ${pgNoDedup.eventsPerS}`,
  '≥ 0.8',
  goals.drain_1_worker_ge_0_8_postgres_alone,
)
row(`freshness p99 at ${FRESH_RATE} events/s`, `${freshness.p99Ms} ms`, '≤ 1 s', goals.freshness_p99_le_1s)
row(
  'loss check',
  `drains ${drains.map((d) => `${d.stored}/${d.accepted}`).join(', ')}, freshness ${freshness.stored}/${freshness.accepted}; duplicates ${drains.reduce((n, d) => n + d.duplicated, freshness.duplicated)}`,
  '0 lost, 0 duplicated',
  goals.no_loss_no_duplicates,
)
row('peak RSS, every phase', `api ${apiRss} MB, worker ${workerPeak} MB`, 'api ≤ 150 MB', goals.api_rss_le_150mb)

await record(QUICK ? 'ingest_quick' : 'ingest', {
  seconds: SECONDS,
  rounds: ROUNDS,
  single,
  scaling: scale,
  batches,
  postgres_alone: { with_event_ids: pgAlone, without_event_ids: pgNoDedup },
  drain: drains,
  drain_rounds: drainRounds.map((x, i) => ({ drain: x.drain.eventsPerS, postgres_alone: x.pg.eventsPerS, ratio: +drainRatios[i]!.toFixed(3) })),
  freshness,
  peak_rss_mb: { api: apiRss, worker: workerPeak, api_after_each_phase: apiPeakAfter },
  goals,
})
await api.stop()
await r.cleanup()
await db.drop()
process.exit(0)
