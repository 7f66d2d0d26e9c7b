import { describe, expect, test } from 'bun:test'
import { eventually, pipeline } from '../../internal/testkit/testkit.ts'

// The seed example, end to end: the real API and worker as separate processes, real Redis and Postgres.
describe('the pipeline', () => {
  const p = pipeline({ STATS_TOKEN: 'e2e-token' })
  const auth = { authorization: 'Bearer e2e-token' }

  const post = (body: unknown) => fetch(`${p.base}/event`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  test('turns three posted events into the documented stats', async () => {
    const events = [
      { user_id: 'u-123', path: '/' },
      { user_id: 'u-456', path: '/pricing' },
      { user_id: 'u-123', path: '/pricing' },
    ].map((e) => ({ site_id: 'site-abc-123', event_type: 'pageview', timestamp: '2025-11-14T10:00:00Z', ...e }))
    for (const e of events) expect((await post(e)).status).toBe(202)

    const stats = await eventually(async () => {
      const body = (await (await fetch(`${p.base}/stats?site_id=site-abc-123&date=2025-11-14`, { headers: auth })).json()) as Record<string, unknown>
      return body.total_views === 3 ? body : null
    })
    expect(stats).toEqual({
      site_id: 'site-abc-123',
      date: '2025-11-14',
      event_type: null,
      total_views: 3,
      unique_users: 2,
      top_paths: [
        { path: '/pricing', views: 2 },
        { path: '/', views: 1 },
      ],
    })
  })

  test('stores an event_id posted twice as one row', async () => {
    const e = { site_id: 'dup-site', event_type: 'pageview', timestamp: '2025-11-14T10:00:00Z', event_id: '5f0c8a3e-2b1d-4c6e-9f7a-1b2c3d4e5f60' }
    const [a, b] = await Promise.all([post(e), post(e)])
    expect([a.status, b.status]).toEqual([202, 202])
    await eventually(async () => (await p.db.sql`select 1 from events where event_id = ${e.event_id}`).length === 1)
    // Let the second delivery land too before counting.
    await eventually(async () => (await p.r.redis.xlen(p.r.queue.stream)) === 0)
    const rows = await p.db.sql`select count(*)::int as n from events where site_id = 'dup-site'`
    expect(rows[0]!.n).toBe(1)
  })

  test('both binaries exit 0 on SIGTERM', async () => {
    expect(await p.api.stop()).toBe(0)
    expect(await p.worker.stop()).toBe(0)
  })
})
