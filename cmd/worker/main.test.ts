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

  test('exits 69 with one line saying which Postgres it tried and how to fix it', async () => {
    const dead = `postgres://postgres@127.0.0.1:${await freePort()}/sluice`
    const { code, output } = await runBinary('worker', { ...envFor(env.db, env.r), DATABASE_URL: dead })
    expect(code).toBe(69)
    expect(output.trim().split('\n')).toEqual([
      `sluice-worker: cannot reach Postgres at ${dead} (ECONNREFUSED): start PostgreSQL, or set DATABASE_URL to a reachable database`,
    ])
  })
})
