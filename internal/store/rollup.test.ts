import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { type Event, PATH_MAX_BYTES } from '../event/event.ts'
import { createTestDatabase, eventually, incompressibleCjk, type TestDatabase } from '../testkit/testkit.ts'
import { rollup, rollupLag, rollupShards } from './rollup.ts'
import { createStore, type Store } from './store.ts'

let db: TestDatabase
let store: Store
beforeEach(async () => {
  db = await createTestDatabase()
  store = createStore(db.sql)
})
afterEach(() => db.drop())

let n = 0
const event = (o: Partial<Event> = {}): Event => ({
  event_id: crypto.randomUUID(),
  site_id: 'r',
  event_type: 'pageview',
  path: '/',
  user_id: `u${n++}`,
  timestamp: '2025-11-14T10:15:00.000Z',
  received_at: Date.now(),
  ...o,
})

type Row = { bucket: Date; views: number; users: number; other: number }
async function rolled(g: string, site = 'r'): Promise<Row[]> {
  const rows = await db.sql`
    select bucket, sum(views)::int as views, hll_cardinality(hll_union_agg(users))::int as users, sum(other_path_views)::int as other
    from ${db.sql(`rollup_${g}`)} where site_id = ${site} group by bucket order by bucket`
  return rows as unknown as Row[]
}
async function rolledPaths(g: string, site = 'r') {
  return db.sql`select path, sum(views)::int as views from ${db.sql(`rollup_${g}_paths`)} where site_id = ${site} group by path order by views desc, path`
}

describe('rollup', () => {
  test('counts every event once into its hour, day, month and year', async () => {
    await store.insertEvents([
      event({ timestamp: '2024-12-31T23:59:59.999Z', user_id: 'a' }),
      event({ timestamp: '2025-01-01T00:00:00.000Z', user_id: 'a' }),
      event({ timestamp: '2025-01-01T00:30:00.000Z', user_id: 'b', event_type: 'click' }),
    ])
    const result = await rollup(db.sql)
    expect(result).toMatchObject({ ran: true, events: 3 })
    expect(await rolled('hour')).toEqual([
      { bucket: new Date('2024-12-31T23:00:00Z'), views: 1, users: 1, other: 0 },
      { bucket: new Date('2025-01-01T00:00:00Z'), views: 2, users: 2, other: 0 },
    ])
    expect((await rolled('day')).map((r) => [r.bucket.toISOString(), r.views])).toEqual([
      ['2024-12-31T00:00:00.000Z', 1],
      ['2025-01-01T00:00:00.000Z', 2],
    ])
    expect((await rolled('month')).map((r) => r.views)).toEqual([1, 2])
    expect(await rolled('year')).toEqual([
      { bucket: new Date('2024-01-01T00:00:00Z'), views: 1, users: 1, other: 0 },
      { bucket: new Date('2025-01-01T00:00:00Z'), views: 2, users: 2, other: 0 },
    ])
  })

  test('running again counts nothing twice', async () => {
    await store.insertEvents([event(), event()])
    await rollup(db.sql)
    expect((await rollup(db.sql)).events).toBe(0)
    expect((await rolled('day'))[0]!.views).toBe(2)
  })

  test('counts a late event, whose hour was already rolled up, into that hour', async () => {
    await store.insertEvents([event({ timestamp: '2025-11-14T10:00:00.000Z' })])
    await rollup(db.sql)
    await store.insertEvents([event({ timestamp: '2025-11-14T10:59:59.000Z' })])
    await rollup(db.sql)
    expect(await rolled('hour')).toEqual([{ bucket: new Date('2025-11-14T10:00:00Z'), views: 2, users: 2, other: 0 }])
  })

  test('never skips an event whose transaction was still open while the rollup ran', async () => {
    const reserved = await db.sql.reserve()
    await reserved`begin`
    await reserved`insert into events (event_id, site_id, event_type, path, user_id, ts, received_at)
                   values (${crypto.randomUUID()}, 'r', 'pageview', '/slow', 'slow', '2025-11-14T10:00:00Z', now())`
    await store.insertEvents([event()]) // commits after the open transaction started
    await rollup(db.sql)
    await reserved`commit`
    reserved.release()
    await rollup(db.sql)
    expect((await rolled('hour'))[0]!.views).toBe(2)
  })

  test('merges unique users across days rather than adding them', async () => {
    await store.insertEvents([
      event({ timestamp: '2025-11-14T10:00:00.000Z', user_id: 'same' }),
      event({ timestamp: '2025-11-15T10:00:00.000Z', user_id: 'same' }),
      event({ timestamp: '2025-11-15T11:00:00.000Z', user_id: null }),
    ])
    await rollup(db.sql)
    expect((await rolled('day')).map((r) => r.users)).toEqual([1, 1])
    expect((await rolled('month')).map((r) => [r.views, r.users])).toEqual([[3, 1]])
  })

  test('keeps the most viewed paths up to the cap and folds the rest into other_path_views', async () => {
    const events: Event[] = []
    for (let p = 0; p < 15; p++) for (let i = 0; i <= p; i++) events.push(event({ path: `/p${String(p).padStart(2, '0')}` }))
    await store.insertEvents(events)
    await rollup(db.sql, { pathCap: 10 })
    const kept = await rolledPaths('hour')
    expect(kept.map((r) => r.path)).toEqual(['/p14', '/p13', '/p12', '/p11', '/p10', '/p09', '/p08', '/p07', '/p06', '/p05'])
    expect((await rolled('hour'))[0]!.other).toBe(1 + 2 + 3 + 4 + 5)
    const stats = await store.stats({ siteId: 'r', from: null, to: null, granularity: null, limit: 3 })
    expect(stats.top_paths).toEqual([
      { path: '/p14', views: 15 },
      { path: '/p13', views: 14 },
      { path: '/p12', views: 13 },
    ])
    expect(stats.top_paths_max_error).toBe(15)
    expect(stats.total_views).toBe(120)
  })

  test('keeps the dimension values with most events up to the cap, across runs, and folds the rest into dim_other', async () => {
    const events: Event[] = []
    for (let c = 0; c < 5; c++) for (let i = 0; i <= c; i++) events.push(event({ country: `C${c}`, user_id: `u${c}-${i}` }))
    await store.insertEvents(events)
    await rollup(db.sql, { dimCap: 3 })
    // A later run that only adds to values already kept trims nothing; one that adds a value trims again.
    await store.insertEvents([event({ country: 'C4', user_id: 'u4-0' })])
    await rollup(db.sql, { dimCap: 3 })
    await store.insertEvents([event({ country: 'C9', user_id: 'late' }), event({ country: 'C9', user_id: 'late' })])
    await rollup(db.sql, { dimCap: 3 })
    for (const g of ['day', 'month', 'year']) {
      const kept =
        await db.sql`select value, events::int, hll_cardinality(users)::int as users from ${db.sql(`rollup_${g}_dims`)} where dim = 'country' order by value`
      expect(kept.map((r) => [r.value, r.events, r.users])).toEqual([
        ['C2', 3, 3],
        ['C3', 4, 4],
        ['C4', 6, 5],
      ])
      const [other] = await db.sql`select events::int, hll_cardinality(users)::int as users from ${db.sql(`rollup_${g}_dim_other`)} where dim = 'country'`
      expect(other).toEqual({ events: 1 + 2 + 2, users: 1 + 2 + 1 })
    }
  })

  test('unions sketches by pairs into the same bytes as hll_union_agg, for groups of none, one, some and many', async () => {
    const rows = await db.sql`
      with sketches as (
        select g, i, case when i % 7 = 3 then null else hll_add_agg(hll_hash_integer(g * 100000 + i * 1000 + j), 14, 5, -1, 1) end as s
        from generate_series(0, 3) g, generate_series(1, (array[1, 2, 3, 400])[g + 1]) i, generate_series(1, 1 + (i % 5) * 50) j
        group by g, i
      )
      select g, sluice_hll_union(s) = hll_union_agg(s) as same, hll_cardinality(sluice_hll_union(s))::int as n from sketches group by g order by g`
    expect(rows.map((r) => r.same)).toEqual([true, true, true, true])
    expect(rows[3]!.n).toBeGreaterThan(1280)
    const [none] = await db.sql`select sluice_hll_union(s) is null as empty from (select null::hll as s) x`
    expect(none!.empty).toBe(true)
  })

  test('lets two concurrent runs share the shards, and counts everything once', async () => {
    const sites = ['a', 'b', 'c', 'd', 'e', 'f']
    for (let i = 0; i < 10; i++) await store.insertEvents(sites.map((site_id) => event({ site_id })))
    // Pairs of runs at once until every event is counted: another database's transaction on
    // the server (an autovacuum ANALYZE) can hold the horizon below some events for a while.
    let counted = 0
    const caughtUp = await eventually(
      async () => {
        const results = await Promise.all([rollup(db.sql, { chunkXids: 1, shards: 3 }), rollup(db.sql, { chunkXids: 1, shards: 3 })])
        counted += results.reduce((s, r) => s + r.events, 0)
        return (await rollupLag(db.sql)).unrolled === 0
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    )
    expect(caughtUp).toBe(true)
    expect(counted).toBe(60)
    await rollup(db.sql, { shards: 3 })
    for (const site of sites) expect((await rolled('year', site))[0]!.views).toBe(10)
  })

  test('works through a backlog in chunks of bounded size', async () => {
    for (let i = 0; i < 5; i++) await store.insertEvents([event(), event()])
    const result = await rollup(db.sql, { chunkXids: 1 })
    expect(result.events).toBe(10)
    expect(result.chunks).toBeGreaterThanOrEqual(5)
  })
})

/** A path of incompressible three-byte characters, too large for a btree index row (2704 bytes). */
const hugePath = (chars = 2047) => `/${incompressibleCjk(chars)}`

describe('rows the rollup cannot count', () => {
  test('are set aside with their error, and every other event, of every site, is still counted', async () => {
    const bad = event({ path: hugePath() })
    await store.insertEvents([event(), event()])
    await store.insertEvents([bad])
    await store.insertEvents([event({ site_id: 'other' })])
    const result = await rollup(db.sql)
    expect(result).toMatchObject({ ran: true, events: 3, setAside: 1 })
    expect((await rolled('day')).map((r) => r.views)).toEqual([2])
    expect((await rolled('year', 'other')).map((r) => r.views)).toEqual([1])
    const [reject] = await store.rollupRejects()
    expect(reject).toMatchObject({ event_id: bad.event_id, code: '22001' })
    expect(reject!.error).toBe(`a path of ${Buffer.byteLength(bad.path!)} bytes, over the ${PATH_MAX_BYTES} the API accepts`)
    expect(reject!.row).toMatchObject({ site_id: 'r', path: bad.path, user_id: bad.user_id })
    expect(await db.sql`select 1 from events where event_id = ${bad.event_id}`).toHaveLength(0)
    expect(await store.rollupLag()).toEqual({ ageSeconds: 0, unrolled: 0, rejected: 1 })
  })

  test("a path over what the API accepts is set aside even where every key but the visits' fits it, and its shard goes on", async () => {
    // 2664 bytes fit the path and dimension keys of a short site id, and not the visit
    // rollups' (entry_page and exit_page are longer names than path): closing such a visit
    // failed on every later run, and the shard's other sites were never counted again.
    const bad = event({ site_id: 'p2664', path: `/${'a'.repeat(2663)}` })
    await store.insertEvents([bad])
    await store.insertEvents([event({ site_id: 'p2664', path: '/ok' })])
    expect(await rollup(db.sql, { visitCloseAfterMs: 0, shards: 1 })).toMatchObject({ events: 1, setAside: 1, visits: 1 })
    expect((await store.rollupRejects()).map((r) => [r.event_id, r.code])).toEqual([[bad.event_id, '22001']])
    await store.insertEvents([event({ site_id: 'p2664', path: '/later' })])
    expect(await rollup(db.sql, { visitCloseAfterMs: 0, shards: 1 })).toMatchObject({ events: 1, setAside: 0 })
    expect((await rolled('day', 'p2664')).map((r) => r.views)).toEqual([2])
  })

  test('are found inside one transaction of many rows, and later chunks go on', async () => {
    const bad = [event({ path: hugePath() }), event({ path: hugePath(1500) })]
    await store.insertEvents([event(), bad[0]!, event(), event(), bad[1]!, event()])
    await store.insertEvents([event({ site_id: 'later' })])
    const result = await rollup(db.sql, { chunkXids: 1 })
    expect(result).toMatchObject({ events: 5, setAside: 2 })
    expect((await store.rollupRejects()).map((r) => r.event_id).sort()).toEqual(bad.map((e) => e.event_id).sort())
    expect((await rolled('hour')).map((r) => r.views)).toEqual([4])
    expect((await rolled('hour', 'later')).map((r) => r.views)).toEqual([1])
  })

  test('can be put back into the raw events, and are counted by the next rollup once the cause is gone', async () => {
    // A cause an operator can remove: a constraint that refuses one path.
    await db.sql`alter table rollup_day_paths add constraint no_blocked check (path <> '/blocked')`
    const bad = event({ path: '/blocked', user_id: 'b', source: 'Google', country: 'DE', utm_campaign: 'launch', props: { plan: 'pro' } })
    await store.insertEvents([bad, event()])
    expect(await rollup(db.sql)).toMatchObject({ events: 1, setAside: 1 })
    expect((await store.rollupRejects())[0]).toMatchObject({ event_id: bad.event_id, code: '23514' })
    await db.sql`alter table rollup_day_paths drop constraint no_blocked`
    expect(await store.replayRejects('all')).toEqual([bad.event_id])
    expect(await store.rollupRejects()).toEqual([])
    // Put back whole: its dimensions and properties too.
    expect((await db.sql`select source, country, utm_campaign, props from events where event_id = ${bad.event_id}`)[0]).toEqual({
      source: 'Google',
      country: 'DE',
      utm_campaign: 'launch',
      props: { plan: 'pro' },
    })
    expect(await rollup(db.sql)).toMatchObject({ events: 1, setAside: 0 })
    expect((await rolled('day')).map((r) => [r.views, r.users])).toEqual([[2, 2]])
    expect((await rolledPaths('month')).map((r) => [r.path, r.views])).toEqual([
      ['/', 1],
      ['/blocked', 1],
    ])
    const stats = await store.stats({ siteId: 'r', from: null, to: null, granularity: null })
    expect(stats).toMatchObject({ total_views: 2, unique_users: 2 })
  })
})

describe('stats over rollups and raw rows', () => {
  test('give the same answer before and after the rollup, and between', async () => {
    const q = { siteId: 'r', from: new Date('2025-11-01T00:00:00Z'), to: new Date('2025-12-01T00:00:00Z'), granularity: 'day' as const }
    await store.insertEvents([event({ user_id: 'x' }), event({ user_id: 'y', timestamp: '2025-11-20T00:00:00.000Z' })])
    const before = await store.stats(q)
    await rollup(db.sql)
    await store.insertEvents([event({ user_id: 'x', path: '/late' })])
    const mixed = await store.stats(q)
    await rollup(db.sql)
    const after = await store.stats(q)
    expect(before.total_views).toBe(2)
    expect(mixed).toEqual(after)
    expect(after).toMatchObject({
      total_views: 3,
      unique_users: 2,
      top_paths: [
        { path: '/', views: 2 },
        { path: '/late', views: 1 },
      ],
    })
    expect(after.series).toHaveLength(30)
    expect(after.series.find((s) => s.bucket === '2025-11-14T00:00:00.000Z')).toEqual({ bucket: '2025-11-14T00:00:00.000Z', views: 2, unique_users: 1 })
  })

  test('filter by event type after the raw rows are rolled up', async () => {
    await store.insertEvents([event({ event_type: 'click', user_id: 'c' }), event({ user_id: 'p' })])
    await rollup(db.sql)
    const s = await store.stats({ siteId: 'r', from: null, to: null, granularity: null, eventType: 'click' })
    expect(s).toMatchObject({ total_views: 1, unique_users: 1 })
  })
})

describe('rollup shards', () => {
  const sites = Array.from({ length: 24 }, (_, i) => `site-${i}`)
  const views = async () => Object.fromEntries((await db.sql`select site_id, sum(views)::int as n from rollup_year group by 1`).map((r) => [r.site_id, r.n]))
  const layout = async () => (await db.sql`select shards, count(*)::int as n from rollup_shards group by 1`).map((r) => ({ ...r }))

  test('count every site once whatever their number, changed between runs with events not yet counted', async () => {
    const expected: Record<string, number> = {}
    for (const [round, shards] of [1, 3, 2, 5, 1].entries()) {
      for (const [i, site_id] of sites.entries()) {
        const batch = Array.from({ length: 1 + ((i + round) % 3) }, () => event({ site_id }))
        await store.insertEvents(batch)
        expected[site_id] = (expected[site_id] ?? 0) + batch.length
      }
      // This round's events are not yet counted when the number of shards changes.
      const result = await rollup(db.sql, { shards, chunkXids: 8 })
      expect(result.ran).toBe(true)
      expect(await layout()).toEqual([{ shards, n: shards }])
      expect(await views()).toEqual(expected)
      expect((await rollupLag(db.sql)).unrolled).toBe(0)
    }
    // The sites were spread over the shards, not all in one.
    const [spread] = await db.sql`select count(distinct sluice_shard(site_id, 5))::int as n from events`
    expect(spread!.n).toBe(5)
  }, 30_000)

  test('a site belongs to one shard, the same on every call', async () => {
    const [row] =
      await db.sql`select count(*)::int as n, count(distinct sluice_shard(s, 7))::int as shards, bool_and(sluice_shard(s, 7) = sluice_shard(s, 7)) as same,
                                      min(sluice_shard(s, 7)) as lo, max(sluice_shard(s, 7)) as hi
                               from (select 'site-' || g as s from generate_series(1, 1000) g) x`
    expect(row).toEqual({ n: 1000, shards: 7, same: true, lo: 0, hi: 6 })
  })

  test('a shard another process holds is skipped, and queries read each site above its own shard watermark', async () => {
    await rollup(db.sql, { shards: 2 })
    // A site of shard 0 and one of shard 1.
    const [{ a, b }] = (await db.sql`
      select min(s) filter (where sluice_shard(s, 2) = 0) as a, min(s) filter (where sluice_shard(s, 2) = 1) as b
      from (values ('x1'), ('x2'), ('x3'), ('x4'), ('x5'), ('x6')) v(s)`) as unknown as [{ a: string; b: string }]
    await store.insertEvents([event({ site_id: a, user_id: 'p' }), event({ site_id: b, user_id: 'q' }), event({ site_id: b, user_id: 'q2' })])
    // Another process holding shard 1 (its lock, like any open transaction, also holds the horizon at its start).
    const holder = await db.sql.reserve()
    const hold = async <T>(during: () => Promise<T>): Promise<T> => {
      await holder`begin`
      await holder`select 1 from rollup_shards where shard = 1 for update`
      try {
        return await during()
      } finally {
        await holder`rollback`
      }
    }
    const q = { from: null, to: null, granularity: null }
    const [partial, statsA, statsB] = await hold(async () => [
      await rollup(db.sql, { shards: 2 }),
      await store.stats({ ...q, siteId: a }),
      await store.stats({ ...q, siteId: b }),
    ])
    // A change of shards must wait for every shard: while one is held it is not made, and the shards as they are go on.
    await store.insertEvents([event({ site_id: a, user_id: 'p' })])
    const refused = await hold(() => rollup(db.sql, { shards: 3 }))
    holder.release()
    expect(partial).toMatchObject({ ran: true, events: 1 })
    expect(statsA).toMatchObject({ total_views: 1, unique_users: 1 })
    expect(statsB).toMatchObject({ total_views: 2, unique_users: 2 })
    expect(refused).toMatchObject({ ran: true, events: 1 })
    expect(await layout()).toEqual([{ shards: 2, n: 2 }])
    expect((await rollupLag(db.sql)).unrolled).toBe(2)
    expect((await rollupShards(db.sql)).map((s) => [s.shard, s.of, s.unrolled])).toEqual([
      [0, 2, 0],
      [1, 2, 2],
    ])
    // The change first brings the held shard to the other's watermark: b's events are counted under the old shards.
    expect((await rollup(db.sql, { shards: 3 })).events).toBe(2)
    expect(await layout()).toEqual([{ shards: 3, n: 3 }])
    expect(await views()).toEqual({ [a]: 2, [b]: 2 })
    expect([await store.stats({ ...q, siteId: a }), await store.stats({ ...q, siteId: b })]).toMatchObject([
      { total_views: 2, unique_users: 1 },
      { total_views: 2, unique_users: 2 },
    ])
  })

  test('a number of shards outside 1 to 64 is refused', async () => {
    await expect(rollup(db.sql, { shards: 0 })).rejects.toThrow('shards must be an integer from 1 to 64')
    await expect(rollup(db.sql, { shards: 65 })).rejects.toThrow('shards must be an integer from 1 to 64')
  })
})
