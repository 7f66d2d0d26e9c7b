import { describe, expect, test } from 'bun:test'
import { envFor, eventually, freePort, runBinary, spawnBinary, isolated } from '../../internal/testkit/testkit.ts'

const env = isolated()

describe('sluice-worker', () => {
  test('runs until SIGTERM, then exits 0', async () => {
    const worker = spawnBinary('worker', envFor(env.db, env.r, { LOG_LEVEL: 'info' }))
    expect(await eventually(async () => worker.output().includes('worker started'))).toBe(true)
    expect(await worker.stop()).toBe(0)
    expect(worker.output()).toContain('worker stopped')
  })

  test('also drains the shards of an earlier QUEUE_SHARDS that still hold events', async () => {
    const { createShardedQueue } = await import('../../internal/queue/shards.ts')
    const before = createShardedQueue(env.r.redis, { stream: env.r.queue.stream, group: env.r.queue.group, shards: 3, cluster: false })
    const events = Array.from({ length: 9 }, (_, i) => ({
      event_id: crypto.randomUUID(),
      site_id: 'reshard',
      event_type: 'pageview',
      path: `/${i}`,
      user_id: `u${i}`,
      timestamp: new Date().toISOString(),
      received_at: Date.now(),
    }))
    for (const e of events) await before.enqueue([e])
    const worker = spawnBinary('worker', envFor(env.db, env.r, { LOG_LEVEL: 'info', QUEUE_SHARDS: '2' }))
    const stored = await eventually(async () => (await env.db.sql`select count(*)::int as n from events where site_id = 'reshard'`)[0]!.n === 9)
    expect(await worker.stop()).toBe(0)
    expect(stored).toBe(true)
    expect(worker.output()).toContain('draining a shard of another QUEUE_SHARDS')
    expect((await before.depth()).length).toBe(0)
  })

  test('a stop held up by an insert that cannot finish exits 1 within SHUTDOWN_TIMEOUT_MS of the signal, and the events are stored later', async () => {
    const { createQueue } = await import('../../internal/queue/queue.ts')
    const blocker = await env.db.sql.reserve()
    const worker = spawnBinary('worker', envFor(env.db, env.r, { LOG_LEVEL: 'info', SHUTDOWN_TIMEOUT_MS: '1500' }))
    try {
      expect(await eventually(async () => worker.output().includes('worker started'))).toBe(true)
      await blocker`begin`
      await blocker`lock table event_ids in access exclusive mode`
      const event = {
        event_id: crypto.randomUUID(),
        site_id: 'held',
        event_type: 'pageview',
        path: '/',
        user_id: 'u',
        timestamp: new Date().toISOString(),
        received_at: Date.now(),
      }
      await createQueue(env.r.redis, env.r.queue).enqueue([event])
      await Bun.sleep(500) // the worker has read it, and its insert waits for the lock
      const signalled = Date.now()
      expect(await worker.stop()).toBe(1)
      const took = Date.now() - signalled
      expect(took).toBeGreaterThanOrEqual(1400)
      expect(took).toBeLessThan(6000)
      expect(worker.output()).toContain('stopping took longer than SHUTDOWN_TIMEOUT_MS')
    } finally {
      await blocker`rollback`.catch(() => {})
      blocker.release()
    }
    // Not acknowledged, so the next worker stores it.
    const next = spawnBinary('worker', envFor(env.db, env.r, { WORKER_CLAIM_IDLE_MS: '1000' }))
    expect(await eventually(async () => (await env.db.sql`select count(*)::int as n from events where site_id = 'held'`)[0]!.n === 1)).toBe(true)
    expect(await next.stop()).toBe(0)
  }, 60_000)

  test('a DATABASE_URL naming a role that does not exist, or a server that is not Postgres, is one line and exit 69, never a hang', async () => {
    const url = new URL(env.db.url)
    url.username = 'no_such_role'
    const role = await runBinary('worker', { ...envFor(env.db, env.r), DATABASE_URL: url.toString() })
    expect(role.code).toBe(69)
    expect(role.output.trim().split('\n')).toEqual([expect.stringContaining('refused the connection: role "no_such_role" does not exist (28000)')])
    // An HTTP server answers and closes: postgres.js would reconnect at once, forever.
    const http = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('no', { status: 400 }) })
    try {
      const started = Date.now()
      const notPg = await runBinary('worker', { ...envFor(env.db, env.r), DATABASE_URL: `postgres://postgres@127.0.0.1:${http.port}/sluice` })
      expect(notPg.code).toBe(69)
      expect(notPg.output).toContain('no Postgres answer within 10 s')
      expect(Date.now() - started).toBeLessThan(20_000)
    } finally {
      http.stop(true)
    }
  }, 40_000)

  test('exits 69 with one line saying which Postgres it tried and how to fix it', async () => {
    const dead = `postgres://postgres@127.0.0.1:${await freePort()}/sluice`
    const { code, output } = await runBinary('worker', { ...envFor(env.db, env.r), DATABASE_URL: dead })
    expect(code).toBe(69)
    expect(output.trim().split('\n')).toEqual([
      `sluice-worker: cannot reach Postgres at ${dead} (ECONNREFUSED): start PostgreSQL, or set DATABASE_URL to a reachable database`,
    ])
  })
})
