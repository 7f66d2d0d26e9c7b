// bun run bench:k6 [-- k6 options...]: runs loadtest.js in a real k6 against the API and a
// worker (own database and stream), then checks that every event k6 saw accepted is stored,
// once. k6 comes from $K6 or the PATH; it is not a dependency of this repository.
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTestDatabase, createTestRedis, envFor, eventually, freePort, spawnBinary, waitForReady } from '../internal/testkit/testkit.ts'
import { cpuSince } from './proc.ts'
import { record } from './results.ts'

const K6 = process.env.K6 ?? 'k6'
const db = await createTestDatabase()
const r = await createTestRedis()
const port = await freePort()
const env = envFor(db, r, { PORT: String(port), STATS_PUBLIC: 'true', LOG_LEVEL: 'warn' })
const api = spawnBinary('api', env)
const worker = spawnBinary('worker', env)
await waitForReady(`http://127.0.0.1:${port}/readyz`, api)

const summaryFile = join(tmpdir(), `sluice-k6-${port}.json`)
const k6 = Bun.spawn(
  [
    K6,
    'run',
    '--quiet',
    '--summary-export',
    summaryFile,
    '-e',
    `BASE_URL=http://127.0.0.1:${port}`,
    ...process.argv.slice(2),
    join(import.meta.dir, '..', 'loadtest.js'),
  ],
  {
    stdout: 'inherit',
    stderr: 'inherit',
  },
)
const cpu = cpuSince({ api: api.proc.pid, worker: worker.proc.pid })
const code = await k6.exited
const used = cpu()
// k6 has exited, so its CPU time comes from the process's resource usage, not /proc.
const k6Cpu = k6.resourceUsage()?.cpuTime
used.used.k6 = k6Cpu ? Number(k6Cpu.user + k6Cpu.system) : Number.NaN

type Metric = Record<string, number> & { thresholds?: Record<string, boolean> }
const summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as { metrics: Record<string, Metric> }
const accepted = summary.metrics.accepted_events?.count ?? 0
await eventually(async () => (await r.redis.xlen(r.queue.stream)) === 0, { timeoutMs: 120_000, intervalMs: 200 })
const [rows] = await db.sql`select count(*)::int as n, count(distinct event_id)::int as d from events`
// Events the API took for a bot's: answered 202 like any other, never stored.
const metricsText = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
const botsDropped = [...metricsText.matchAll(/^sluice_events_bots_dropped_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)
const failedThresholds = Object.entries(summary.metrics).flatMap(([name, m]) =>
  Object.entries(m.thresholds ?? {})
    .filter(([, crossed]) => crossed)
    .map(([t]) => `${name} ${t}`),
)
const seconds = (k: string) => (used.used[k]! / 1e6).toFixed(1)
const result = {
  k6_exit: code,
  thresholds_crossed: failedThresholds,
  dropped_iterations: summary.metrics.dropped_iterations?.count ?? 0,
  accepted,
  stored: rows!.n as number,
  bots_dropped: botsDropped,
  duplicated: (rows!.n as number) - (rows!.d as number),
  cpu_seconds: { k6: Number(seconds('k6')), api: Number(seconds('api')), worker: Number(seconds('worker')) },
  steal_share: used.stealShare,
}
console.log(JSON.stringify(result, null, 2))
console.log(
  `k6 exit ${code}; thresholds crossed: ${failedThresholds.length ? failedThresholds.join('; ') : 'none'}; dropped iterations ${result.dropped_iterations}; accepted ${accepted}, stored ${result.stored}, duplicated ${result.duplicated}, dropped as bots ${botsDropped}; CPU s: k6 ${seconds('k6')}, api ${seconds('api')}, worker ${seconds('worker')}`,
)
await record('k6', result)
await Promise.all([api.stop(), worker.stop()])
await r.cleanup()
await db.drop()
process.exit(0)
