import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import Redis from 'ioredis'
import postgres from 'postgres'
import { startLoad, type Load } from '../../internal/testkit/load.ts'
import { prepareDatabase } from '../../internal/store/migrate.ts'
import { startPostgres, startRedis } from '../../internal/testkit/servers.ts'
import { envFor, eventually, freePort, spawnBinary, uniqueName, waitForReady, type Binary } from '../../internal/testkit/testkit.ts'

// Fault injection with real processes: each case runs the real binaries under a steady load,
// breaks something, and then checks that Postgres holds exactly the events answered 202.
// The Redis and Postgres here are the tests' own, started on free ports, so they can be killed.

let pg: Awaited<ReturnType<typeof startPostgres>>
let redis: Awaited<ReturnType<typeof startRedis>>
const report: string[] = []
const running: Binary[] = []
const clients: { sql: postgres.Sql; r: Redis }[] = []

beforeAll(async () => {
  ;[pg, redis] = await Promise.all([startPostgres(), startRedis({ aof: true })])
}, 60_000)
afterEach(async () => {
  await Promise.all(running.splice(0).map((b) => (b.proc.exitCode === null && b.proc.signalCode === null ? b.stop('SIGKILL') : null)))
  for (const { sql, r } of clients.splice(0)) {
    r.disconnect()
    await sql.end({ timeout: 1 })
  }
})
afterAll(async () => {
  console.log(`fault report:\n  ${report.join('\n  ')}`)
  await Promise.all([pg?.destroy(), redis?.destroy()])
})

type Stack = {
  env: Record<string, string>
  base: string
  sql: postgres.Sql
  r: Redis
  start: (name: string, extra?: Record<string, string>, args?: string[]) => Binary
}

async function stack(extra: Record<string, string> = {}): Promise<Stack> {
  const db = uniqueName('fault')
  const port = await freePort()
  const env = envFor(
    { url: pg.url(db) },
    { url: redis.url, queue: { stream: `${db}:events` } },
    {
      PORT: String(port),
      STATS_TOKEN: 't',
      WORKER_CLAIM_IDLE_MS: '1000',
      WORKER_BLOCK_MS: '100',
      REDIS_TIMEOUT_MS: '500',
      ...extra,
    },
  )
  await prepareDatabase(pg.url(db))
  const start = (name: string, more: Record<string, string> = {}, args: string[] = []) => {
    const b = spawnBinary(name, { ...env, ...more }, args)
    running.push(b)
    return b
  }
  const sql = postgres(pg.url(db), { max: 2, onnotice: () => {} })
  const r = new Redis(redis.url, { maxRetriesPerRequest: null })
  r.on('error', () => {}) // the tests take Redis down on purpose
  clients.push({ sql, r })
  return { env, base: `http://127.0.0.1:${port}`, sql, r, start }
}

/** Waits until every queued event is stored, then counts what the 202s promised against what Postgres holds. */
async function settle(s: Stack, load: Load) {
  const drained = await eventually(async () => (await s.r.xlen(s.env.QUEUE_STREAM!).catch(() => -1)) === 0, { timeoutMs: 60_000, intervalMs: 100 })
  expect(drained).toBe(true)
  const rows = await s.sql`select event_id::text as id from events`
  const stored = new Set(rows.map((r) => r.id as string))
  const lost = [...load.accepted.keys()].filter((id) => !stored.has(id))
  return { accepted: load.accepted.size, stored: rows.length, lost, duplicated: rows.length - stored.size, statuses: Object.fromEntries(load.statuses) }
}

const pendingOf = async (r: Redis, stream: string, consumer: string) => {
  const summary = (await r.xpending(stream, 'sluice-workers').catch(() => null)) as [number, string, string, [string, string][] | null] | null
  return Number(summary?.[3]?.find(([c]) => c === consumer)?.[1] ?? 0)
}

describe('under load', () => {
  test('SIGKILLing a worker mid-batch three times, with a second worker running, loses and doubles nothing', async () => {
    const s = await stack()
    const api = s.start('api')
    await waitForReady(`${s.base}/readyz`, api)
    let a = s.start('worker', { WORKER_NAME: 'worker-a' })
    s.start('worker', { WORKER_NAME: 'worker-b' })
    const load = startLoad(() => s.base)
    const heldAtDeath: number[] = []
    for (let kill = 0; kill < 3; kill++) {
      await Bun.sleep(700)
      // Freeze worker-a the moment it holds a batch it has not acknowledged, then kill it.
      for (let tries = 0; tries < 500; tries++) {
        if ((await pendingOf(s.r, s.env.QUEUE_STREAM!, 'worker-a')) > 0) {
          a.proc.kill('SIGSTOP')
          if ((await pendingOf(s.r, s.env.QUEUE_STREAM!, 'worker-a')) > 0) break
          a.proc.kill('SIGCONT')
        }
      }
      heldAtDeath.push(await pendingOf(s.r, s.env.QUEUE_STREAM!, 'worker-a'))
      a.proc.kill('SIGKILL')
      await a.proc.exited
      await Bun.sleep(300)
      a = s.start('worker', { WORKER_NAME: 'worker-a' }) // comes back under the same name
    }
    await Bun.sleep(1000)
    await load.stop()
    const result = await settle(s, load)
    report.push(
      `worker SIGKILL x3 (held ${heldAtDeath.join(', ')} unacknowledged entries when killed): ${result.accepted} answered 202, ${result.stored} stored, ${result.lost.length} lost, ${result.duplicated} duplicated`,
    )
    expect(heldAtDeath.filter((n) => n > 0).length).toBeGreaterThan(0)
    expect(result.lost).toEqual([])
    expect(result.duplicated).toBe(0)
    expect(result.stored).toBe(result.accepted)
  }, 90_000)

  test('a Postgres crash and restart loses nothing, and ingest keeps answering 202 throughout', async () => {
    const s = await stack()
    const api = s.start('api')
    await waitForReady(`${s.base}/readyz`, api)
    s.start('worker')
    const load = startLoad(() => s.base)
    await Bun.sleep(1500)
    pg.stop('immediate')
    const during = load.accepted.size
    await Bun.sleep(2500)
    const acceptedWhileDown = load.accepted.size - during
    pg.start()
    await Bun.sleep(1500)
    await load.stop()
    const result = await settle(s, load)
    report.push(
      `Postgres crash, down 2.5 s: ${result.accepted} answered 202 (${acceptedWhileDown} while it was down), ${result.stored} stored, ${result.lost.length} lost, ${result.duplicated} duplicated; statuses ${JSON.stringify(result.statuses)}`,
    )
    expect(acceptedWhileDown).toBeGreaterThan(0)
    expect(Object.keys(result.statuses)).toEqual(['202'])
    expect(result.lost).toEqual([])
    expect(result.duplicated).toBe(0)
  }, 90_000)

  test('a frozen Redis: every 503 and failed batch item carries the event_id, and retrying with it stores each event exactly once', async () => {
    const s = await stack({ REDIS_TIMEOUT_MS: '300' })
    const api = s.start('api')
    await waitForReady(`${s.base}/readyz`, api)
    s.start('worker')
    // Clients that send no event_id of their own: the API assigns one, and a 503 must hand it back.
    const payload = new Map<string, Record<string, unknown>>() // path -> event, each path sent once
    const unsure = new Map<string, Record<string, unknown>>() // event_id from a 503 -> its event
    let stopping = false
    let n = 0
    const statuses: Record<string, number> = {}
    const send = async () => {
      while (!stopping) {
        const batch = n % 3 === 0
        const events = Array.from({ length: batch ? 4 : 1 }, () => ({
          site_id: 'frozen',
          event_type: 'pageview',
          path: `/f/${n++}`,
          timestamp: new Date().toISOString(),
        }))
        for (const e of events) payload.set(e.path, e)
        const res = await fetch(`${s.base}/${batch ? 'events' : 'event'}`, {
          method: 'POST',
          body: JSON.stringify(batch ? events : events[0]),
          headers: { 'content-type': 'application/json' },
        }).catch(() => null)
        if (!res) continue
        statuses[res.status] = (statuses[res.status] ?? 0) + 1
        const body = (await res.json()) as { event_id?: string; code?: string; results?: { status: string; event_id?: string }[] }
        if (res.status === 503 && !batch) {
          expect(body.code).toBe('queue_unavailable')
          expect(body.event_id).toMatch(/^[0-9a-f-]{36}$/)
          unsure.set(body.event_id!, events[0]!)
        }
        for (const [i, item] of (body.results ?? []).entries()) {
          if (item.status === 'failed') {
            expect(item.event_id).toMatch(/^[0-9a-f-]{36}$/)
            unsure.set(item.event_id!, events[i]!)
          }
        }
      }
    }
    const running = Promise.all(Array.from({ length: 6 }, send))
    await Bun.sleep(800)
    redis.freeze()
    await Bun.sleep(3000)
    redis.thaw()
    await Bun.sleep(800)
    stopping = true
    await running
    expect(unsure.size).toBeGreaterThan(0)

    // A 503 after a timeout is not a refusal: once drained, Redis has applied writes it had
    // been sent while frozen, so some of the events answered 503 are stored already.
    const drained = () => eventually(async () => (await s.r.xlen(s.env.QUEUE_STREAM!)) === 0, { timeoutMs: 30_000, intervalMs: 100 })
    const storedOf = async (ids: string[]) => (await s.sql`select count(*)::int as n from events where event_id = any(${ids}::uuid[])`)[0]!.n as number
    await drained()
    const storedBeforeRetry = await storedOf([...unsure.keys()])
    expect(storedBeforeRetry).toBeGreaterThan(0)

    // Each unsure event is retried, as the README says, with the event_id the answer gave.
    for (const [id, e] of unsure) {
      const res = await fetch(`${s.base}/event`, {
        method: 'POST',
        body: JSON.stringify({ ...e, event_id: id }),
        headers: { 'content-type': 'application/json' },
      })
      expect(res.status).toBe(202)
    }
    await drained()
    const rows = await s.sql`select path, count(*)::int as n from events where site_id = 'frozen' group by path`
    const storedTwice = rows.filter((r) => r.n > 1)
    const storedAfterRetry = await storedOf([...unsure.keys()])
    report.push(
      `frozen Redis 3 s: statuses ${JSON.stringify(statuses)}; ${unsure.size} events answered 503 or failed; ${storedBeforeRetry} of them stored anyway once Redis woke; retried with their event_id, ${storedAfterRetry} stored, ${storedTwice.length} stored twice`,
    )
    expect(storedTwice).toEqual([])
    expect(storedAfterRetry).toBe(unsure.size)
    // Every event a 202 or a retry covered is stored.
    const answered = rows.length
    expect(answered).toBeGreaterThanOrEqual(unsure.size)
  }, 90_000)

  test('a Redis crash and restart with AOF loses only events acknowledged within the fsync window, and every binary recovers by itself', async () => {
    const s = await stack({ CRON_QUEUE_DEPTH: '* * * * * *', LOG_LEVEL: 'info' })
    const api = s.start('api')
    await waitForReady(`${s.base}/readyz`, api)
    s.start('worker')
    const cron = s.start('cron')
    const load = startLoad(() => s.base)
    await Bun.sleep(1500)
    const killedAt = Date.now()
    await redis.stop('SIGKILL')
    await Bun.sleep(1500)
    const cronLinesBefore = cron.output().split('"msg":"queue depth"').length
    await redis.start()
    const recovered = await eventually(async () => (await fetch(`${s.base}/readyz`)).ok, { timeoutMs: 15_000 })
    const acceptedAfter = load.accepted.size
    await Bun.sleep(1500)
    await load.stop()
    const result = await settle(s, load)
    const oldestLost = result.lost.length
      ? ` (the oldest acknowledged ${killedAt - Math.min(...result.lost.map((id) => load.accepted.get(id)!))} ms before the crash)`
      : ''
    report.push(
      `Redis SIGKILL with appendfsync everysec, down 1.5 s: ${result.accepted} answered 202, ${result.stored} stored, ${result.lost.length} lost${oldestLost}, ${result.duplicated} duplicated; statuses ${JSON.stringify(result.statuses)}`,
    )
    expect(recovered).toBe(true)
    expect(load.accepted.size).toBeGreaterThan(acceptedAfter) // the API took writes again without a restart
    expect(cron.output().split('"msg":"queue depth"').length).toBeGreaterThan(cronLinesBefore) // so did cron
    expect(result.statuses['503']).toBeGreaterThan(0)
    expect(Object.keys(result.statuses).filter((k) => k !== '202' && k !== '503')).toEqual([])
    for (const id of result.lost) expect(killedAt - load.accepted.get(id)!).toBeLessThanOrEqual(2000)
    expect(result.duplicated).toBe(0)
  }, 90_000)

  test('SIGTERM to every binary under load: each exits 0 and nothing in flight is lost', async () => {
    const s = await stack({ LOG_LEVEL: 'info' })
    const api = s.start('api')
    await waitForReady(`${s.base}/readyz`, api)
    const worker = s.start('worker')
    const cron = s.start('cron', { CRON_ROLLUP: '* * * * * *' })
    const load = startLoad(() => s.base)
    await Bun.sleep(1500)
    const codes = await Promise.all([api.stop(), worker.stop(), cron.stop()])
    await load.stop()
    expect(codes).toEqual([0, 0, 0])
    s.start('worker') // whatever was still queued is drained by the next worker
    const result = await settle(s, load)
    report.push(
      `SIGTERM to api, worker and cron under load: exit codes ${codes.join(', ')}; ${result.accepted} answered 202, ${result.stored} stored, ${result.lost.length} lost, ${result.duplicated} duplicated`,
    )
    expect(result.lost).toEqual([])
    expect(result.duplicated).toBe(0)
  }, 90_000)
})

describe('durability setting', () => {
  test('with REDIS_WAIT_REPLICAS=1 the API answers 202 only while a replica confirms the write', async () => {
    const replica = await startRedis({ aof: false, replicaOf: redis.port })
    const s = await stack({ REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '200' })
    const api = s.start('api')
    await waitForReady(`${s.base}/readyz`, api)
    const post = () =>
      fetch(`${s.base}/event`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ site_id: 's', event_type: 'pageview', timestamp: new Date().toISOString() }),
      })
    expect(await eventually(async () => (await post()).status === 202, { timeoutMs: 10_000 })).toBe(true)
    await replica.stop('SIGKILL')
    const res = await post()
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('1')
    await replica.start()
    expect(await eventually(async () => (await post()).status === 202, { timeoutMs: 15_000 })).toBe(true)
    await replica.destroy()
  }, 60_000)
})
