import { describe, expect, setDefaultTimeout, test } from 'bun:test'
import type { Event } from '../event/event.ts'
import { parseQuery, runQuery } from '../query/query.ts'
import { rollup, rollupLag } from '../store/rollup.ts'
import { createStore } from '../store/store.ts'
import { eventually, isolated } from '../testkit/testkit.ts'

const ctx = isolated()
const MIN = 60_000
const T0 = Date.parse('2025-11-14T10:00:00.000Z')

let site = 0
/** A fresh site per test, so tests share the database without seeing each other's visits. */
const newSite = () => `v${site++}`
const at = (min: number) => new Date(T0 + min * MIN).toISOString()
const ev = (site_id: string, user: string, min: number, o: Partial<Event> = {}): Event => ({
  event_id: crypto.randomUUID(),
  site_id,
  event_type: 'pageview',
  path: '/',
  user_id: user,
  timestamp: at(min),
  received_at: Date.now(),
  ...o,
})
/**
 * Rolls up every stored event, closing the visits nothing was received for since
 * `closeBefore` (default: all of them). Repeats while a transaction elsewhere on the server
 * (another test's) holds the rollup's horizon below the newest events.
 */
async function roll(closeBefore = Date.now() + 1000, dimCap?: number) {
  // Count every event first, closing nothing, then close: a visit must not close while one
  // of its events waits below a horizon another test's transaction holds back.
  const caughtUp = await eventually(
    async () => {
      await rollup(ctx.db.sql, { visitCloseAfterMs: 0, dimCap, now: () => new Date(0) })
      return (await rollupLag(ctx.db.sql)).unrolled === 0 || null
    },
    { timeoutMs: 80_000 },
  )
  if (!caughtUp) throw new Error('the rollup did not reach the newest events: a long transaction elsewhere on the server holds its horizon')
  await rollup(ctx.db.sql, { visitCloseAfterMs: 0, dimCap, now: () => new Date(closeBefore) })
}

/** Runs the rollup with `options` until every stored event is counted (another test's transaction may hold its horizon back a while). */
const catchUp = async (options: Parameters<typeof rollup>[1]) =>
  expect(
    await eventually(
      async () => {
        await rollup(ctx.db.sql, options)
        return (await rollupLag(ctx.db.sql)).unrolled === 0 || null
      },
      { timeoutMs: 80_000 },
    ),
  ).toBe(true)

type Totals = { visits: number; bounces: number; duration_ms: number; pageviews: number; events: number }
async function totals(siteId: string, g = 'day', dim = '', value = ''): Promise<Totals> {
  const [row] = await ctx.db.sql`
    select coalesce(sum(visits), 0)::int as visits, coalesce(sum(bounces), 0)::int as bounces, coalesce(sum(duration_ms), 0)::float8 as duration_ms,
           coalesce(sum(pageviews), 0)::int as pageviews, coalesce(sum(events), 0)::int as events
    from ${ctx.db.sql(`rollup_${g}_visits`)} where site_id = ${siteId} and dim = ${dim} and value = ${value}`
  return row as unknown as Totals
}
const values = async (siteId: string, dim: string) =>
  Object.fromEntries(
    (await ctx.db.sql`select value, sum(visits)::int as n from rollup_day_visits where site_id = ${siteId} and dim = ${dim} group by 1`).map((r) => [
      r.value,
      r.n,
    ]),
  )

setDefaultTimeout(120_000)

describe('visits', () => {
  test('events of one visitor with gaps under 30 minutes are one visit; a gap of 30 minutes starts another', async () => {
    const s = newSite()
    const store = createStore(ctx.db.sql)
    await store.insertEvents([
      ev(s, 'a', 0, { path: '/home' }),
      ev(s, 'a', 10, { path: '/pricing' }),
      ev(s, 'a', 39, { path: '/signup', event_type: 'signup' }),
      ev(s, 'a', 69, { path: '/docs' }),
      ev(s, 'b', 5, { path: '/blog' }),
    ])
    await roll()
    // a: [0, 10, 39] is one visit of 39 min (2 page views), [69] another; b: one bounce.
    expect(await totals(s)).toEqual({ visits: 3, bounces: 2, duration_ms: 39 * MIN, pageviews: 4, events: 5 })
    expect(await values(s, 'entry_page')).toEqual({ '/home': 1, '/docs': 1, '/blog': 1 })
    expect(await values(s, 'exit_page')).toEqual({ '/pricing': 1, '/docs': 1, '/blog': 1 })
    expect(await values(s, 'event_type')).toEqual({ pageview: 3, signup: 1 })
    expect(await totals(s, 'hour')).toEqual(await totals(s))
    expect(await totals(s, 'year')).toEqual(await totals(s))
  })

  test('a visit stays open across rollups until nothing has been received for it, and events of later rollups extend it', async () => {
    const s = newSite()
    const store = createStore(ctx.db.sql)
    await store.insertEvents([ev(s, 'a', 0, { path: '/a' })])
    await roll(Date.now() - 60_000) // received just now: still open
    expect((await totals(s)).visits).toBe(0)
    const [open] = await ctx.db.sql`select count(*)::int as n from visits_open where site_id = ${s}`
    expect(open!.n).toBe(1)
    await store.insertEvents([ev(s, 'a', 20, { path: '/b' })])
    await roll()
    expect(await totals(s)).toEqual({ visits: 1, bounces: 0, duration_ms: 20 * MIN, pageviews: 2, events: 2 })
    expect(await values(s, 'exit_page')).toEqual({ '/b': 1 })
  })

  test('a backlog does not cut visits in two: a chunk closes no visit that an event still waiting could extend', async () => {
    const R0 = Date.now() - 3 * 3_600_000
    const later = { chunkXids: 1, visitCloseAfterMs: 30 * MIN, now: () => new Date(R0 + 60 * MIN) }
    // Two events of one visit, received 10 minutes apart and stored in two transactions; the
    // rollup runs an hour later, a transaction per chunk. The first chunk must not close the
    // visit the second extends.
    const s = newSite()
    const store = createStore(ctx.db.sql)
    await store.insertEvents([ev(s, 'a', 0, { path: '/a', received_at: R0 })])
    await store.insertEvents([ev(s, 'a', 10, { path: '/b', received_at: R0 + 10 * MIN })])
    await catchUp(later)
    expect(await totals(s)).toEqual({ visits: 1, bounces: 0, duration_ms: 10 * MIN, pageviews: 2, events: 2 })
    // An event still in the queue, received 15 minutes after the first, holds the closing back.
    const q = newSite()
    await store.insertEvents([ev(q, 'a', 0, { path: '/a', received_at: R0 })])
    await catchUp({ ...later, unstoredSince: async () => new Date(R0 + 15 * MIN) })
    expect((await totals(q)).visits).toBe(0)
    await store.insertEvents([ev(q, 'a', 15, { path: '/b', received_at: R0 + 15 * MIN })])
    await catchUp(later)
    expect(await totals(q)).toEqual({ visits: 1, bounces: 0, duration_ms: 15 * MIN, pageviews: 2, events: 2 })
  })

  test('a chunk closes no visit that a stored event received earlier, but committed later than others, could extend', async () => {
    const R0 = Date.now() - 3 * 3_600_000
    const later = { chunkXids: 1, visitCloseAfterMs: 30 * MIN, now: () => new Date(R0 + 60 * MIN) }
    const s = newSite()
    const store = createStore(ctx.db.sql)
    await store.insertEvents([ev(s, 'a', 0, { path: '/a', received_at: R0 })])
    await store.insertEvents([ev(s, 'b', 40, { received_at: R0 + 40 * MIN })])
    // Received a minute after a's first event, but stored last: its batch was retried after
    // another worker took it over. It extends a's visit, which must still be open for it.
    await store.insertEvents([ev(s, 'a', 5, { path: '/b', received_at: R0 + MIN })])
    await catchUp(later)
    await rollup(ctx.db.sql, { ...later, now: () => new Date(R0 + 180 * MIN) })
    expect(await totals(s)).toEqual({ visits: 2, bounces: 1, duration_ms: 5 * MIN, pageviews: 3, events: 3 })
  })

  test('a late event between two open visits joins them into one, taking the earlier entry page', async () => {
    const s = newSite()
    const store = createStore(ctx.db.sql)
    await store.insertEvents([ev(s, 'a', 0, { path: '/first' }), ev(s, 'a', 50, { path: '/last' })])
    await roll(Date.now() - 60_000)
    await store.insertEvents([ev(s, 'a', 25, { path: '/middle' })])
    await roll()
    expect(await totals(s)).toEqual({ visits: 1, bounces: 0, duration_ms: 50 * MIN, pageviews: 3, events: 3 })
    expect(await values(s, 'entry_page')).toEqual({ '/first': 1 })
    expect(await values(s, 'path')).toEqual({ '/first': 1, '/middle': 1, '/last': 1 })
  })

  test('page views at the same instant enter and leave by the smallest and largest path in byte order, whatever the database collation', async () => {
    const s = newSite()
    const store = createStore(ctx.db.sql)
    // A collation where '/a' sorts before '/B', as a database created under en_US would have.
    await ctx.db.sql`alter table events alter column path type text collate "en-US-x-icu"`
    try {
      await store.insertEvents([ev(s, 'a', 0, { path: '/a' }), ev(s, 'a', 0, { path: '/B' })])
      await roll()
    } finally {
      await ctx.db.sql`alter table events alter column path type text collate "default"`
    }
    expect(await values(s, 'entry_page')).toEqual({ '/B': 1 })
    expect(await values(s, 'exit_page')).toEqual({ '/a': 1 })
  })

  test('an event that arrives after its visit was closed counts as a visit of its own', async () => {
    const s = newSite()
    const store = createStore(ctx.db.sql)
    await store.insertEvents([ev(s, 'a', 0, { path: '/a' })])
    await roll()
    await store.insertEvents([ev(s, 'a', 5, { path: '/late' })])
    await roll()
    expect(await totals(s)).toEqual({ visits: 2, bounces: 2, duration_ms: 0, pageviews: 2, events: 2 })
  })

  test("a visit takes its first event's source and country, and is counted in the bucket where it starts", async () => {
    const s = newSite()
    const store = createStore(ctx.db.sql)
    // 23:50 to 00:10 UTC: one visit, counted on the first day.
    const late = (min: number) => new Date(Date.parse('2025-11-30T23:50:00.000Z') + min * MIN).toISOString()
    await store.insertEvents([
      { ...ev(s, 'a', 0, { source: 'Google', country: 'DE' }), timestamp: late(0) },
      { ...ev(s, 'a', 0, { source: 'Bing', country: 'FR' }), timestamp: late(20) },
    ])
    await roll()
    expect(await values(s, 'source')).toEqual({ Google: 1 })
    expect(await values(s, 'country')).toEqual({ DE: 1 })
    const months = await ctx.db.sql`select bucket, visits::int from rollup_month_visits where site_id = ${s} and dim = ''`
    expect(months.map((m) => [m.bucket.toISOString(), m.visits])).toEqual([['2025-11-01T00:00:00.000Z', 1]])
  })

  test("an attribute stored as '' by one event and as null by another (a hand-written entry) is one value, and the rollup goes on", async () => {
    const s = newSite()
    // insertEvents takes what the API never sends: an empty string where a value is missing.
    await createStore(ctx.db.sql).insertEvents([
      ev(s, 'a', 0, { source: '', country: '', path: '' }),
      ev(s, 'b', 0, { source: null, country: null, path: null }),
      ev(s, 'c', 0, { source: 'Google', country: 'DE' }),
    ])
    await roll()
    expect(await values(s, 'source')).toEqual({ '': 2, Google: 1 })
    expect(await values(s, 'country')).toEqual({ '': 2, DE: 1 })
    const dims = await ctx.db.sql`
      select dim, value, events::int from rollup_day_dims where site_id = ${s} and dim in ('source', 'path') order by dim, value`
    expect(dims.map((r) => [r.dim, r.value, r.events])).toEqual([
      ['path', '', 2],
      ['path', '/', 1],
      ['source', '', 2],
      ['source', 'Google', 1],
    ])
  })

  test('events without a visitor belong to no visit', async () => {
    const s = newSite()
    await createStore(ctx.db.sql).insertEvents([ev(s, 'a', 0, { user_id: null })])
    await roll()
    expect((await totals(s)).visits).toBe(0)
  })
})

describe('visit metrics in /v1/query', () => {
  const ask = async (body: Record<string, unknown>, now = new Date(T0 + 120 * MIN)) => {
    const parsed = parseQuery(body, now)
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems))
    return runQuery(ctx.db.sql, parsed.query, { now })
  }
  /** Site s: visitor a visits /home → /pricing (10 min) then signs up; b bounces on /blog; c's visit is still open. */
  async function seed() {
    const s = newSite()
    const store = createStore(ctx.db.sql)
    await store.insertEvents([
      ev(s, 'a', 0, { path: '/home', source: 'Google' }),
      ev(s, 'a', 10, { path: '/pricing', source: 'Google' }),
      ev(s, 'a', 12, { path: '/pricing', event_type: 'signup', source: 'Google' }),
      ev(s, 'b', 5, { path: '/blog/intro', source: 'Direct / None' }),
    ])
    await roll()
    await store.insertEvents([ev(s, 'c', 30, { path: '/blog/intro', source: 'Google' }), ev(s, 'c', 31, { path: '/home', source: 'Google' })])
    await roll(Date.now() - 60_000)
    return s
  }

  test('visits, bounce rate, duration and views per visit count closed and still-open visits', async () => {
    const s = await seed()
    const r = await ask({
      site_id: s,
      date_range: ['2025-11-14', '2025-11-14'],
      metrics: ['visitors', 'visits', 'bounce_rate', 'visit_duration', 'views_per_visit'],
    })
    // a: 12 min, 2 views; b: bounce, 0 s, 1 view; c (open): 1 min, 2 views.
    expect(r.results).toEqual([{ dimensions: [], metrics: [3, 3, 33.3, Math.round((13 * 60) / 3), 1.67] }])
  })

  test('entry and exit pages break visits down, with the visitors and page views of those visits', async () => {
    const s = await seed()
    const r = await ask({ site_id: s, date_range: ['2025-11-14', '2025-11-14'], metrics: ['visits', 'visitors', 'pageviews'], dimensions: ['entry_page'] })
    expect(r.results).toEqual([
      { dimensions: ['/blog/intro'], metrics: [2, 2, 3] },
      { dimensions: ['/home'], metrics: [1, 1, 2] },
    ])
    const exits = await ask({
      site_id: s,
      date_range: ['2025-11-14', '2025-11-14'],
      metrics: ['visits'],
      dimensions: ['exit_page'],
      filters: [['is', 'exit_page', ['/pricing']]],
    })
    expect(exits.results).toEqual([{ dimensions: ['/pricing'], metrics: [1] }])
  })

  test('entry pages past the cap are named in meta: trimmed_visits and trimmed_events say how much any page may be low', async () => {
    const s = newSite()
    // Entry pages /p1 (3 visits), /p2 (2), /p3, /p4, /p5 (1 each); each visit of two events, all from Google.
    const entries = ['/p1', '/p1', '/p1', '/p2', '/p2', '/p3', '/p4', '/p5']
    await createStore(ctx.db.sql).insertEvents(
      entries.flatMap((path, i) => [ev(s, `u${i}`, i, { path, source: 'Google' }), ev(s, `u${i}`, i + 1, { path: '/next', source: 'Google' })]),
    )
    await roll(Date.now() + 1000, 2)
    const range = ['2025-11-14', '2025-11-14']
    const pages = await ask({ site_id: s, date_range: range, metrics: ['visits', 'events'], dimensions: ['entry_page'] })
    expect(pages.results).toEqual([
      { dimensions: ['/p1'], metrics: [3, 6] },
      { dimensions: ['/p2'], metrics: [2, 4] },
    ])
    expect(pages.meta).toMatchObject({ trimmed_visits: 3, trimmed_events: 6 })
    // One source kept whole: nothing trimmed; and no trimmed_visits without visit figures.
    const sources = await ask({ site_id: s, date_range: range, metrics: ['visits', 'events'], dimensions: ['source'] })
    expect(sources.results).toEqual([{ dimensions: ['Google'], metrics: [8, 16] }])
    expect(sources.meta).toMatchObject({ trimmed_visits: 0, trimmed_events: 0 })
    expect((await ask({ site_id: s, date_range: range, metrics: ['events'], dimensions: ['source'] })).meta.trimmed_visits).toBeUndefined()
  })

  test('conversion rate divides converting visitors by all visitors, for an event type or a path pattern', async () => {
    const s = await seed()
    const range = ['2025-11-14', '2025-11-14']
    const signup = await ask({ site_id: s, date_range: range, metrics: ['visitors', 'conversion_rate'], filters: [['is', 'event_type', ['signup']]] })
    expect(signup.results).toEqual([{ dimensions: [], metrics: [1, 33.33] }])
    // Goals broken down by event type and filtered to one (a click on a goal): still of all visitors.
    const clicked = await ask({
      site_id: s,
      date_range: range,
      metrics: ['visitors', 'conversion_rate'],
      dimensions: ['event_type'],
      filters: [['is', 'event_type', ['signup']]],
    })
    expect(clicked.results).toEqual([{ dimensions: ['signup'], metrics: [1, 33.33] }])
    const blog = await ask({ site_id: s, date_range: range, metrics: ['conversion_rate'], filters: [['matches', 'path', ['/blog/*']]] })
    expect(blog.results).toEqual([{ dimensions: [], metrics: [66.67] }])
    const goals = await ask({ site_id: s, date_range: range, metrics: ['visitors', 'conversion_rate'], dimensions: ['event_type'] })
    expect(goals.results).toEqual([
      { dimensions: ['pageview'], metrics: [3, 100] },
      { dimensions: ['signup'], metrics: [1, 33.33] },
    ])
  })

  test('conversion rate by a capped dimension takes its visitors from the same exact source as its conversions, never 0 or over 100 % for a folded value', async () => {
    const s = newSite()
    // Paths /p1 (3 visitors), /p2 (2), /p3, /p4 and /p5 (1 each); the /p5 visitor signs up there. Rolled up with 2 paths kept.
    const paths = ['/p1', '/p1', '/p1', '/p2', '/p2', '/p3', '/p4', '/p5']
    await createStore(ctx.db.sql).insertEvents([
      ...paths.map((path, i) => ev(s, `u${i}`, i, { path })),
      ev(s, 'u7', 9, { path: '/p5', event_type: 'signup' }),
      ev(s, 'u0', 10, { path: '/p1', event_type: 'signup' }),
    ])
    await roll(Date.now() + 1000, 2)
    const r = await ask({
      site_id: s,
      date_range: ['2025-11-14', '2025-11-14'],
      metrics: ['visitors', 'conversion_rate'],
      dimensions: ['path'],
      filters: [['is', 'event_type', ['signup']]],
    })
    expect(r.results).toEqual([
      { dimensions: ['/p1'], metrics: [1, 33.33] },
      { dimensions: ['/p5'], metrics: [1, 100] },
    ])
  })

  test('visit metrics by a visit attribute come from the visits that started with it', async () => {
    const s = await seed()
    const r = await ask({ site_id: s, date_range: ['2025-11-14', '2025-11-14'], metrics: ['visits', 'bounce_rate'], dimensions: ['source'] })
    expect(r.results).toEqual([
      { dimensions: ['Google'], metrics: [2, 0] },
      { dimensions: ['Direct / None'], metrics: [1, 100] },
    ])
  })

  test('visit:source counts a whole visit, its visitor, page views and events, under the source it came from, where source counts its later pages as Direct', async () => {
    const s = newSite()
    // a lands from Google and reads two more pages (the tracker sends no same-site referrer); b comes direct.
    await createStore(ctx.db.sql).insertEvents([
      ev(s, 'a', 0, { path: '/', source: 'Google', channel: 'Organic Search' }),
      ev(s, 'a', 2, { path: '/pricing', source: 'Direct / None', channel: 'Direct' }),
      ev(s, 'a', 4, { path: '/signup', source: 'Direct / None', channel: 'Direct' }),
      ev(s, 'b', 5, { path: '/', source: 'Direct / None', channel: 'Direct' }),
    ])
    await roll(Date.now() + 1000)
    const base = { site_id: s, date_range: ['2025-11-14', '2025-11-14'], metrics: ['visitors', 'pageviews', 'events', 'visits'] }
    const perEvent = await ask({ ...base, metrics: ['visitors', 'pageviews'], dimensions: ['source'] })
    expect(perEvent.results).toEqual([
      { dimensions: ['Direct / None'], metrics: [2, 3] },
      { dimensions: ['Google'], metrics: [1, 1] },
    ])
    const perVisit = await ask({ ...base, dimensions: ['visit:source'] })
    expect(perVisit.results).toEqual([
      { dimensions: ['Direct / None'], metrics: [1, 1, 1, 1] },
      { dimensions: ['Google'], metrics: [1, 3, 3, 1] },
    ])
    expect(perVisit.meta.source).toBe('rollups')
    const channels = await ask({ ...base, metrics: ['visitors'], dimensions: ['visit:channel'], filters: [['is_not', 'visit:channel', ['Direct']]] })
    expect(channels.results).toEqual([{ dimensions: ['Organic Search'], metrics: [1] }])
    // Filtered to visits from Google: the whole page counts those visits.
    const fromGoogle = await ask({ ...base, filters: [['is', 'visit:source', ['Google']]] })
    expect(fromGoogle.results).toEqual([{ dimensions: [], metrics: [1, 3, 3, 1] }])
    // With any other dimension, or in realtime, it is refused as entry pages are.
    const err = await ask({ ...base, dimensions: ['visit:source'], filters: [['is', 'country', ['DE']]] }).catch((e) => e)
    expect(err.code).toBe('visits_one_dimension')
    expect(parseQuery({ ...base, date_range: 'realtime', metrics: ['visitors'], filters: [['is', 'visit:source', ['Google']]] })).toMatchObject({
      ok: false,
      problems: [{ field: 'date_range' }],
    })
  })

  test('visitors by visit:source before the upgrade that sketched them are refused with visits_not_recorded; their visits are answered', async () => {
    const s = await seed()
    const base = { site_id: s, date_range: ['2025-11-14', '2025-11-14'], dimensions: ['visit:source'] }
    await ctx.db.sql`update rollup_state set visit_sketches_since = ${new Date(T0 + 60 * MIN)}`
    try {
      const err = await ask({ ...base, metrics: ['visitors'] }).catch((e) => e)
      expect({ code: err.code, message: err.message }).toMatchObject({ code: 'visits_not_recorded', message: expect.stringMatching(/visit:source/) })
      expect((await ask({ ...base, metrics: ['visits'] })).results).toEqual([
        { dimensions: ['Google'], metrics: [2] },
        { dimensions: ['Direct / None'], metrics: [1] },
      ])
      // Entry pages always kept their sketches.
      expect((await ask({ ...base, dimensions: ['entry_page'], metrics: ['visitors'] })).results).toHaveLength(2)
    } finally {
      await ctx.db.sql`update rollup_state set visit_sketches_since = null`
    }
  })

  test('visit metrics over two dimensions at once are refused with visits_one_dimension', async () => {
    const s = await seed()
    const err = await ask({
      site_id: s,
      date_range: ['2025-11-14', '2025-11-14'],
      metrics: ['visits'],
      dimensions: ['source'],
      filters: [['is', 'country', ['DE']]],
    }).catch((e) => e)
    expect(err.code).toBe('visits_one_dimension')
  })

  test('visit metrics filtered by several paths are refused with visits_one_value, one path is answered', async () => {
    const s = await seed()
    const base = { site_id: s, date_range: ['2025-11-14', '2025-11-14'], metrics: ['visits'] }
    const err = await ask({ ...base, filters: [['contains', 'path', ['/']]] }).catch((e) => e)
    expect(err.code).toBe('visits_one_value')
    expect((await ask({ ...base, filters: [['is', 'path', ['/home']]] })).results).toEqual([{ dimensions: [], metrics: [2] }])
  })

  test('realtime counts the visitors of the last five minutes', async () => {
    const s = newSite()
    const now = Date.now()
    const recent = (user: string, agoMs: number) => ({ ...ev(s, user, 0), timestamp: new Date(now - agoMs).toISOString() })
    await createStore(ctx.db.sql).insertEvents([recent('a', 10_000), recent('b', 60_000), recent('b', 4 * MIN), recent('c', 6 * MIN)])
    const r = await ask({ site_id: s, date_range: 'realtime', metrics: ['visitors', 'pageviews'] }, new Date(now))
    expect(r.results).toEqual([{ dimensions: [], metrics: [2, 3] }])
  })
})
