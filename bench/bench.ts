// bun run bench [-- --quick]: the ingestion benchmark. Starts a bare Bun.serve baseline,
// the API and workers (own database and stream on the local Postgres and Redis), drives
// them with wrk, prints a table and writes bench/results.json. Measures, never asserts.
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createTestDatabase, createTestRedis, envFor, eventually, freePort, spawnBinary, waitForReady, type Binary } from '../internal/testkit/testkit.ts'
import { record } from './results.ts'
import { wrk, type WrkResult } from './wrk.ts'

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const QUICK = values.quick
const SECONDS = QUICK ? 4 : 10
const DRAIN_EVENTS = QUICK ? 200_000 : 1_000_000
const FRESH_RATE = 10_000
const FRESH_SECONDS = QUICK ? 5 : 15
const TIMESTAMP = new Date().toISOString()

const peakRssMb = (pid: number) => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN
}
const line = (s: string) => console.log(s)

// 1. Baseline: a bare Bun.serve that parses JSON.
const basePort = await freePort()
const baseline = Bun.spawn(['bun', `${import.meta.dir}/baseline.ts`, String(basePort)], { stdout: 'ignore', stderr: 'inherit' })
await eventually(() => fetch(`http://127.0.0.1:${basePort}/`, { method: 'POST', body: '{}' }).then((r) => r.status === 202, () => false))
const base = await wrk(`http://127.0.0.1:${basePort}/event`, { script: 'event.lua', seconds: SECONDS, env: { TIMESTAMP } })
baseline.kill()
line(`baseline Bun.serve: ${Math.round(base.rps)} req/s, p50 ${base.p50Ms} ms, p99 ${base.p99Ms} ms`)

// 2-4. The API alone (no worker, so the stream only grows).
const db = await createTestDatabase()
const r = await createTestRedis()
const apiPort = await freePort()
const url = `http://127.0.0.1:${apiPort}`
const env = envFor(db, r, { PORT: String(apiPort), STATS_TOKEN: 'bench', QUEUE_MAX_BACKLOG: '100000000', LOG_LEVEL: 'warn', WORKER_BLOCK_MS: '100' })
// spawnBinary runs each binary as its package.json script does (the API with --smol).
const api = spawnBinary('api', env)
await waitForReady(`${url}/readyz`, api)
const single = await wrk(`${url}/event`, { script: 'event.lua', seconds: SECONDS, env: { TIMESTAMP } })
line(`POST /event: ${Math.round(single.rps)} req/s (${((100 * single.rps) / base.rps).toFixed(1)} % of baseline), p50 ${single.p50Ms} ms, p99 ${single.p99Ms} ms, non-2xx ${single.non2xx}`)
/** Clears the stream once requests still in flight when wrk stopped have landed. */
const clear = async () => {
  await Bun.sleep(1000)
  await r.redis.del(r.queue.stream)
}
await clear()
const batches: Record<string, WrkResult & { eventsPerS: number }> = {}
for (const n of [100, 1000]) {
  const w = await wrk(`${url}/events`, { script: 'batch.lua', seconds: SECONDS, env: { TIMESTAMP, BATCH: String(n) } })
  batches[n] = { ...w, eventsPerS: Math.round((w.requests - w.non2xx) * n / SECONDS) }
  line(`POST /events x${n}: ${batches[n]!.eventsPerS} events/s accepted (${Math.round(w.rps)} req/s, p99 ${w.p99Ms} ms, non-2xx ${w.non2xx})`)
  await clear()
}
const apiRss = peakRssMb(api.proc.pid)

// 5. Drain: fill the stream through the API, then time 1 and 2 workers emptying it into Postgres.
async function fill(n: number): Promise<number> {
  let accepted = 0
  const body = JSON.stringify(Array.from({ length: 1000 }, (_, i) => ({ site_id: `drain-${i % 20}`, event_type: 'pageview', path: `/p/${i % 100}`, user_id: `u-${i}`, timestamp: TIMESTAMP })))
  const sender = async () => {
    while (accepted < n) {
      accepted += 1000
      const res = await fetch(`${url}/events`, { method: 'POST', body, headers: { 'content-type': 'application/json' } }).catch((err) => {
        throw new Error(`${err.message}; api exit ${api.proc.exitCode} ${api.proc.signalCode}; output:\n${api.output().slice(-3000)}`)
      })
      const out = (await res.json()) as { accepted: number }
      accepted += out.accepted - 1000
    }
  }
  await Promise.all(Array.from({ length: 4 }, sender))
  return accepted
}
const rowCount = async () => (await db.sql`select count(*)::int as n, count(distinct event_id)::int as d from events`)[0] as { n: number; d: number }
async function drain(workers: number) {
  await db.sql`truncate events, event_ids`
  await r.redis.del(r.queue.stream)
  const accepted = await fill(DRAIN_EVENTS)
  await Bun.sleep(500)
  const queued = await r.redis.xlen(r.queue.stream)
  const spawned = performance.now()
  const procs: Binary[] = Array.from({ length: workers }, (_, i) => spawnBinary('worker', { ...env, WORKER_NAME: `bench-${i}` }))
  // Time the storing itself, from the first stored row; start-up is reported apart.
  await eventually(async () => (await rowCount()).n > 0, { timeoutMs: 60_000, intervalMs: 5 })
  const started = performance.now()
  const first = (await rowCount()).n
  await eventually(async () => (await rowCount()).n >= accepted, { timeoutMs: 600_000, intervalMs: 50 })
  const seconds = (performance.now() - started) / 1000
  const startupS = +((started - spawned) / 1000).toFixed(2)
  const rss = Math.max(...procs.map((p) => peakRssMb(p.proc.pid)))
  await Promise.all(procs.map((p) => p.stop()))
  const rows = await rowCount()
  const result = { workers, accepted, queued, stored: rows.n, duplicated: rows.n - rows.d, seconds: +seconds.toFixed(2), startupS, eventsPerS: Math.round((accepted - first) / seconds), peakRssMb: rss }
  line(`drain, ${workers} worker(s): ${result.eventsPerS} events/s (${accepted - first} events in ${result.seconds} s after a ${startupS} s start-up); answered 202 ${accepted}, stored ${rows.n}, duplicated ${result.duplicated}`)
  return result
}
const drain1 = await drain(1)
const drain2 = await drain(2)

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
  const events = Array.from({ length: per }, () => ({ event_id: crypto.randomUUID(), site_id: 'fresh', event_type: 'pageview', path: '/', timestamp: new Date().toISOString() }))
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
  rate: FRESH_RATE, seconds: FRESH_SECONDS, accepted: ackedAt.size, stored: rows.length,
  lost: [...ackedAt.keys()].filter((id) => !stored.has(id)).length, duplicated: rows.length - stored.size,
  p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: pct(1),
}
line(`freshness at ${FRESH_RATE} events/s: p50 ${freshness.p50Ms} ms, p99 ${freshness.p99Ms} ms, max ${freshness.maxMs} ms; ${freshness.accepted} answered 202, ${freshness.stored} stored, ${freshness.lost} lost, ${freshness.duplicated} duplicated`)
const workerRss = peakRssMb(worker.proc.pid)
await worker.stop()
await api.stop()
line(`peak RSS: api ${apiRss} MB, worker ${Math.max(workerRss, drain1.peakRssMb)} MB`)

const goals = {
  single_ratio_ge_85pct: single.rps / base.rps >= 0.85,
  single_p99_le_5ms: single.p99Ms <= 5,
  batch_ge_250k: Math.max(batches[100]!.eventsPerS, batches[1000]!.eventsPerS) >= 250_000,
  drain_1_worker_ge_80k: drain1.eventsPerS >= 80_000,
  freshness_p99_le_1s: freshness.p99Ms <= 1000,
  api_rss_le_150mb: apiRss <= 150,
  no_loss_no_duplicates: drain1.stored === drain1.accepted && drain2.stored === drain2.accepted && freshness.lost === 0 && drain1.duplicated + drain2.duplicated + freshness.duplicated === 0,
}
console.log('\n| measure | result | goal | met |\n|---|---|---|---|')
const row = (m: string, v: string, g: string, ok: boolean) => console.log(`| ${m} | ${v} | ${g} | ${ok ? 'yes' : 'no'} |`)
row('POST /event vs bare Bun.serve', `${Math.round(single.rps)} vs ${Math.round(base.rps)} req/s = ${((100 * single.rps) / base.rps).toFixed(1)} %`, '≥ 85 %', goals.single_ratio_ge_85pct)
row('POST /event p99 at 50 connections', `${single.p99Ms} ms (p50 ${single.p50Ms} ms)`, '≤ 5 ms', goals.single_p99_le_5ms)
row('POST /events (100 and 1000 per batch)', `${batches[100]!.eventsPerS} and ${batches[1000]!.eventsPerS} events/s`, '≥ 250,000', goals.batch_ge_250k)
row('drain, 1 worker / 2 workers', `${drain1.eventsPerS} / ${drain2.eventsPerS} events/s`, '≥ 80,000 (1 worker)', goals.drain_1_worker_ge_80k)
row(`freshness p99 at ${FRESH_RATE} events/s`, `${freshness.p99Ms} ms`, '≤ 1 s', goals.freshness_p99_le_1s)
row('loss check', `drain ${drain1.stored}/${drain1.accepted} and ${drain2.stored}/${drain2.accepted}, freshness ${freshness.stored}/${freshness.accepted}; duplicates ${drain1.duplicated + drain2.duplicated + freshness.duplicated}`, '0 lost, 0 duplicated', goals.no_loss_no_duplicates)
row('peak RSS', `api ${apiRss} MB, worker ${Math.max(workerRss, drain1.peakRssMb)} MB`, 'api ≤ 150 MB', goals.api_rss_le_150mb)

await record(QUICK ? 'ingest_quick' : 'ingest', { seconds: SECONDS, baseline: base, single, batches, drain: [drain1, drain2], freshness, peak_rss_mb: { api: apiRss, worker: Math.max(workerRss, drain1.peakRssMb) }, goals })
await r.cleanup()
await db.drop()
process.exit(0)
