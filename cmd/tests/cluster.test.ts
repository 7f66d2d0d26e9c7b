import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startRedisCluster } from '../../internal/testkit/servers.ts'
import {
  createTestDatabase,
  envFor,
  eventually,
  freePort,
  runBinary,
  spawnBinary,
  uniqueName,
  waitForReady,
  type Binary,
  type TestDatabase,
} from '../../internal/testkit/testkit.ts'

// The pipeline end to end on a real three-master Redis Cluster: the stream is sharded over
// six keys whose hash tags spread them over the masters, and workers consume every shard.

let cluster: Awaited<ReturnType<typeof startRedisCluster>>
let db: TestDatabase
let api: Binary
let worker: Binary
let base: string
const stream = uniqueName('cl')
let env: Record<string, string>

beforeAll(async () => {
  ;[cluster, db] = await Promise.all([startRedisCluster(3), createTestDatabase()])
  const port = await freePort()
  base = `http://127.0.0.1:${port}`
  env = {
    // REDIS_URL is not used once REDIS_CLUSTER_NODES is set.
    ...envFor(db, { url: 'redis://127.0.0.1:1', queue: { stream } }, { PORT: String(port), STATS_TOKEN: 't', WORKER_BLOCK_MS: '100' }),
    REDIS_CLUSTER_NODES: cluster.nodes,
  }
  api = spawnBinary('api', env)
  worker = spawnBinary('worker', env)
  await waitForReady(`${base}/readyz`, api, 30_000)
}, 60_000)
afterAll(async () => {
  await Promise.all([api?.stop(), worker?.stop()])
  await cluster?.destroy()
  await db?.drop()
})

describe('on a Redis Cluster', () => {
  test('the pipeline stores every event once, the stats are right, and the shards sit on every master', async () => {
    const seed = [
      ['u-123', '/'],
      ['u-456', '/pricing'],
      ['u-123', '/pricing'],
    ].map(([user_id, path]) => ({
      site_id: 'site-abc-123',
      event_type: 'pageview',
      timestamp: '2025-11-14T10:00:00Z',
      user_id,
      path,
    }))
    for (const e of seed) {
      const res = await fetch(`${base}/event`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(e) })
      expect(res.status).toBe(202)
    }
    // Enough requests that every shard gets some (requests go to the shards in turn).
    for (let i = 0; i < 30; i++) {
      const batch = Array.from({ length: 20 }, (_, j) => ({
        site_id: 'cluster-site',
        event_type: 'pageview',
        timestamp: new Date().toISOString(),
        user_id: `u${(i * 20 + j) % 50}`,
      }))
      const res = await fetch(`${base}/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(batch) })
      expect(res.status).toBe(202)
    }
    const stored = await eventually(async () => ((await db.sql`select count(*)::int as n from events`)[0]!.n as number) === 603, { timeoutMs: 20_000 })
    expect(stored).toBe(true)

    const stats = await (await fetch(`${base}/stats?site_id=site-abc-123&date=2025-11-14`, { headers: { authorization: 'Bearer t' } })).json()
    expect(stats).toMatchObject({
      total_views: 3,
      unique_users: 2,
      top_paths: [
        { path: '/pricing', views: 2 },
        { path: '/', views: 1 },
      ],
    })
    const today = new Date().toISOString().slice(0, 10)
    const other = (await (await fetch(`${base}/stats?site_id=cluster-site&date=${today}`, { headers: { authorization: 'Bearer t' } })).json()) as {
      total_views: number
      unique_users: number
    }
    expect(other).toMatchObject({ total_views: 600, unique_users: 50 })

    const perMaster = cluster.ports.map((p) => cluster.keys(p, `{${stream}:*`).filter((k) => !k.endsWith(':dead')).length)
    console.log(`cluster: shard streams per master ${JSON.stringify(perMaster)}`)
    expect(perMaster.reduce((a, b) => a + b, 0)).toBe(6)
    for (const n of perMaster) expect(n).toBe(2)

    const depth = await runBinary('cron', env, ['--once', 'queue-depth'])
    expect(depth.code).toBe(0)
  }, 60_000)

  test('every binary exits 0 on SIGTERM', async () => {
    expect(await api.stop()).toBe(0)
    expect(await worker.stop()).toBe(0)
  })
})
