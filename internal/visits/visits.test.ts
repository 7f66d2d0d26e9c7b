import { describe, expect, setDefaultTimeout, test } from 'bun:test'
import type { Event } from '../event/event.ts'
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
async function roll(closeBefore = Date.now() + 1000) {
  await eventually(
    async () => {
      await rollup(ctx.db.sql, { visitCloseAfterMs: 0, now: () => new Date(closeBefore) })
      return (await rollupLag(ctx.db.sql)).unrolled === 0 || null
    },
    { timeoutMs: 60_000 },
  )
}

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

setDefaultTimeout(90_000)

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

  test('events without a visitor belong to no visit', async () => {
    const s = newSite()
    await createStore(ctx.db.sql).insertEvents([ev(s, 'a', 0, { user_id: null })])
    await roll()
    expect((await totals(s)).visits).toBe(0)
  })
})
