// The drain measure shared by the benchmarks: fill the stream through the API with one
// batch body sent over and over, then time workers emptying it into Postgres.
import { createTestDatabase, createTestRedis, eventually, spawnBinary, type Binary } from '../internal/testkit/testkit.ts'
import { cpuUs, peakRssMb } from './proc.ts'

export type DrainResult = {
  workers: number
  accepted: number
  queued: number
  stored: number
  duplicated: number
  seconds: number
  startupS: number
  eventsPerS: number
  /** Worker CPU time per stored event, from /proc. */
  cpuUsPerEvent: number
  peakRssMb: number
}

export type DrainSetup = {
  db: Awaited<ReturnType<typeof createTestDatabase>>
  r: Awaited<ReturnType<typeof createTestRedis>>
  /** The API's base URL. */
  url: string
  /** The environment workers start with. */
  env: Record<string, string>
  api: Binary
}

/**
 * Fills the stream with `events` events by posting `body` (a batch of 1000) from 4 senders,
 * then starts `workers` workers and times them from the first acknowledged entry (acks
 * follow commits) to the last; start-up is reported apart. Polls the stream length: counting
 * rows in Postgres while it inserts would take Postgres time from the workers measured.
 */
export async function drain(
  { db, r, url, env, api }: DrainSetup,
  workers: number,
  events: number,
  body: string,
  headers: Record<string, string> = {},
): Promise<DrainResult> {
  await db.sql`truncate events, event_ids`
  await r.redis.del(r.queue.stream)
  let accepted = 0
  const sender = async () => {
    while (accepted < events) {
      accepted += 1000
      const res = await fetch(`${url}/events`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } }).catch((err) => {
        throw new Error(`${err.message}; api exit ${api.proc.exitCode} ${api.proc.signalCode}; output:\n${api.output().slice(-3000)}`)
      })
      const out = (await res.json()) as { accepted: number }
      accepted += out.accepted - 1000
    }
  }
  await Promise.all(Array.from({ length: 4 }, sender))
  await Bun.sleep(500)
  const queued = await r.redis.xlen(r.queue.stream)
  const spawned = performance.now()
  const procs: Binary[] = Array.from({ length: workers }, (_, i) => spawnBinary('worker', { ...env, WORKER_NAME: `bench-${i}` }))
  const xlen = () => r.redis.xlen(r.queue.stream)
  await eventually(async () => (await xlen()) < queued, { timeoutMs: 60_000, intervalMs: 2 })
  const started = performance.now()
  const left = await xlen()
  await eventually(async () => (await xlen()) === 0, { timeoutMs: 600_000, intervalMs: 5 })
  const seconds = (performance.now() - started) / 1000
  // Whole CPU time of the workers, start-up included (the same for every body).
  const cpu = procs.reduce((s, p) => s + cpuUs(p.proc.pid), 0)
  const rss = Math.max(...procs.map((p) => peakRssMb(p.proc.pid)))
  await Promise.all(procs.map((p) => p.stop()))
  const [rows] = await db.sql`select count(*)::int as n, count(distinct event_id)::int as d from events`
  const timed = Math.round((accepted * left) / queued)
  return {
    workers,
    accepted,
    queued,
    stored: rows!.n,
    duplicated: rows!.n - rows!.d,
    seconds: +seconds.toFixed(2),
    startupS: +((started - spawned) / 1000).toFixed(2),
    eventsPerS: Math.round(timed / seconds),
    cpuUsPerEvent: +(cpu / Math.max(1, rows!.n)).toFixed(2),
    peakRssMb: rss,
  }
}

/** The drain's plain batch: 1000 page views over 20 sites, 100 paths and 1000 users, at `timestamp`. */
export function plainBatch(timestamp: string): string {
  return JSON.stringify(
    Array.from({ length: 1000 }, (_, i) => ({ site_id: `drain-${i % 20}`, event_type: 'pageview', path: `/p/${i % 100}`, user_id: `u-${i}`, timestamp })),
  )
}
