import { afterAll, describe, expect, test } from 'bun:test'
import type { Event } from '../event/event.ts'
import { silentLogger } from '../log/log.ts'
import { createQueue } from '../queue/queue.ts'
import { createRegistry } from '../sites/registry.ts'
import { createSites } from '../sites/sites.ts'
import { dayOf } from '../sites/timezone.ts'
import { HLL_EXACT_UP_TO } from '../store/rollup.ts'
import { createStore } from '../store/store.ts'
import { eventually, isolated, prng } from '../testkit/testkit.ts'
import { createApp } from './http.ts'

// An oracle for local days: events spread over a DST change and a month boundary go in
// through the store and the real rollup; every local day (and month) /v1/query answers for a
// site in America/New_York, and for one in Asia/Kolkata (+05:30, whose days start at the UTC
// hour holding local midnight, 18:00 UTC), must equal what this file counts from the events.

const env = isolated()
const TOKEN = 'tz-token'
const stop = new AbortController()
afterAll(() => stop.abort())

type Cell = { views: number; users: Set<string> }
const SITES = [
  // New York: DST starts 2025-03-09 at 07:00 UTC; the range crosses February into March.
  { id: 'tz-ny', timezone: 'America/New_York', from: '2025-02-25', to: '2025-03-12', users: 2600, perDay: 3600 },
  { id: 'tz-kolkata', timezone: 'Asia/Kolkata', from: '2025-02-25', to: '2025-03-04', users: 400, perDay: 900 },
]

let ready: Promise<{ app: ReturnType<typeof createApp>; sent: Event[] }> | null = null
function setup(hourRollupDays = 0) {
  ready ??= (async () => {
    const rand = prng(20250309)
    const store = createStore(env.db.sql)
    const sites = createSites(env.db.sql)
    const sent: Event[] = []
    for (const s of SITES) {
      await sites.add({ site_id: s.id, timezone: s.timezone })
      // A day either side of the range, so that the edges matter.
      const start = Date.parse(`${s.from}T00:00:00Z`) - 86_400_000
      const span = Date.parse(`${s.to}T00:00:00Z`) + 2 * 86_400_000 - start
      const n = Math.round((s.perDay * span) / 86_400_000)
      for (let i = 0; i < n; i++) {
        sent.push({
          event_id: crypto.randomUUID(),
          site_id: s.id,
          event_type: rand() < 0.8 ? 'pageview' : 'click',
          path: '/',
          user_id: `u${Math.floor(rand() * s.users)}`,
          timestamp: new Date(start + Math.floor(rand() * span)).toISOString(),
          received_at: Date.now(),
          country: rand() < 0.5 ? 'US' : 'IN',
        })
      }
    }
    // Most rolled up, the rest still raw: answers combine both.
    const cut = Math.floor(sent.length * 0.9)
    for (let i = 0; i < cut; i += 5000) await store.insertEvents(sent.slice(i, Math.min(i + 5000, cut)))
    const rolled = await eventually(async () => (await store.rollup()).ran && (await store.rollupLag()).unrolled === 0, { timeoutMs: 120_000, intervalMs: 200 })
    expect(rolled).toBe(true)
    for (let i = cut; i < sent.length; i += 5000) await store.insertEvents(sent.slice(i, Math.min(i + 5000, sent.length)))
    const registry = createRegistry({ sql: env.db.sql, log: silentLogger() })
    await registry.start(stop.signal)
    const app = createApp(
      { queue: createQueue(env.r.redis, env.r.queue), store, log: silentLogger(), checks: {}, registry },
      { ingest: { bodyLimitBytes: 65536, batchMax: 100, maxFutureMs: 300_000 }, statsToken: TOKEN, hourRollupDays },
    )
    return { app, sent }
  })()
  return ready
}

/** Views and visitors per bucket label, by `bucketOf` each event's timestamp. */
function oracle(events: Event[], site: string, bucketOf: (ms: number) => string, filter: (e: Event) => boolean = () => true) {
  const cells = new Map<string, Cell>()
  for (const e of events) {
    if (e.site_id !== site || !filter(e)) continue
    const key = bucketOf(Date.parse(e.timestamp))
    const c = cells.get(key) ?? { views: 0, users: new Set() }
    cells.set(key, c)
    c.views++
    c.users.add(e.user_id!)
  }
  return cells
}

async function query(app: ReturnType<typeof createApp>, body: Record<string, unknown>) {
  const res = await app.request('/v1/query', {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  expect(res.status).toBe(200)
  return (await res.json()) as { results: { dimensions: string[]; metrics: number[] }[]; meta: { timezone: string; date_range: [string, string] } }
}

/** Views exact; visitors exact up to the sketch's exact threshold, within 2 % beyond. */
function expectMatches(answer: { dimensions: string[]; metrics: number[] }[], expected: Map<string, Cell>, labels: string[], label: string) {
  expect(answer.map((r) => r.dimensions.at(-1))).toEqual(labels.filter((l) => expected.has(l)))
  let inexact = 0
  for (const r of answer) {
    const cell = expected.get(r.dimensions.at(-1)!)!
    const [visitors, events] = r.metrics as [number, number]
    expect({ label, bucket: r.dimensions.at(-1), events }).toEqual({ label, bucket: r.dimensions.at(-1), events: cell.views })
    const exact = cell.users.size
    if (exact <= HLL_EXACT_UP_TO) expect({ label, bucket: r.dimensions.at(-1), visitors }).toEqual({ label, bucket: r.dimensions.at(-1), visitors: exact })
    else {
      inexact++
      expect(Math.abs(visitors - exact) / exact).toBeLessThanOrEqual(0.02)
    }
  }
  return inexact
}

const days = (from: string, to: string) => {
  const out: string[] = []
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += 86_400_000) out.push(new Date(t).toISOString().slice(0, 10))
  return out
}

describe('local days against an exact oracle', () => {
  test.each(SITES)(
    '$timezone: every local day and month of the range, from hourly rollups and raw events',
    async (s) => {
      const { app, sent } = await setup()
      const body = { site_id: s.id, date_range: [s.from, s.to], metrics: ['visitors', 'events'] }
      const byDay = await query(app, { ...body, dimensions: ['time:day'] })
      expect(byDay.meta.timezone).toBe(s.timezone)
      const localDays = oracle(sent, s.id, (ms) => dayOf(ms, s.timezone))
      const labels = days(s.from, s.to)
      const inexact = expectMatches(byDay.results, localDays, labels, 'day')
      if (s.id === 'tz-ny') expect(inexact).toBeGreaterThan(0) // past the exact threshold: merged sketches
      // The range's ends are local midnights (or, in Kolkata, the UTC hour holding them).
      const first = sent.filter((e) => e.site_id === s.id && dayOf(Date.parse(e.timestamp), s.timezone) === s.from).map((e) => Date.parse(e.timestamp))
      expect(Date.parse(byDay.meta.date_range[0])).toBeLessThanOrEqual(Math.min(...first))
      const months = oracle(
        sent,
        s.id,
        (ms) => `${dayOf(ms, s.timezone).slice(0, 7)}-01`,
        (e) => labels.includes(dayOf(Date.parse(e.timestamp), s.timezone)),
      )
      expectMatches((await query(app, { ...body, dimensions: ['time:month'] })).results, months, ['2025-02-01', '2025-03-01'], 'month')
      // A dimension over local days is answered from raw events while they are all kept.
      const us = oracle(
        sent,
        s.id,
        (ms) => dayOf(ms, s.timezone),
        (e) => e.country === 'US',
      )
      const byCountry = await query(app, { ...body, dimensions: ['country', 'time:day'], filters: [['is', 'country', ['US']]] })
      expect(byCountry.meta.timezone).toBe(s.timezone)
      expectMatches(byCountry.results, us, labels, 'country by day')
    },
    180_000,
  )

  test("a range in the site's zone that ends in 9998 answers at once, with every event from its start on", async () => {
    const { app, sent } = await setup()
    const s = SITES[0]!
    const answer = await query(app, { site_id: s.id, date_range: [s.from, '9998-12-31'], metrics: ['visitors', 'events'] })
    expect(answer.meta.timezone).toBe(s.timezone)
    const all = oracle(
      sent,
      s.id,
      () => 'all',
      (e) => dayOf(Date.parse(e.timestamp), s.timezone) >= s.from,
    )
    expectMatches(
      answer.results.map((r) => ({ ...r, dimensions: ['all'] })),
      all,
      ['all'],
      'to 9998',
    )
  }, 180_000)

  test('a range older than the hourly detail kept is answered in UTC days, and says so', async () => {
    const { sent } = await setup()
    const sites = createSites(env.db.sql)
    const registry = createRegistry({ sql: env.db.sql, log: silentLogger() })
    await registry.start(stop.signal)
    // Hourly rollups kept 30 days: 2025 is long gone.
    const app = createApp(
      { queue: createQueue(env.r.redis, env.r.queue), store: createStore(env.db.sql), log: silentLogger(), checks: {}, registry },
      { ingest: { bodyLimitBytes: 65536, batchMax: 100, maxFutureMs: 300_000 }, statsToken: TOKEN, hourRollupDays: 30 },
    )
    expect((await sites.show('tz-ny')).timezone).toBe('America/New_York')
    const answer = await query(app, { site_id: 'tz-ny', date_range: ['2025-02-25', '2025-03-12'], metrics: ['visitors', 'events'], dimensions: ['time:day'] })
    expect(answer.meta.timezone).toBe('UTC')
    expect(answer.meta.date_range).toEqual(['2025-02-25T00:00:00.000Z', '2025-03-13T00:00:00.000Z'])
    const utcDays = oracle(sent, 'tz-ny', (ms) => new Date(ms).toISOString().slice(0, 10))
    expectMatches(answer.results, utcDays, days('2025-02-25', '2025-03-12'), 'utc day')
    // The same with a dimension once raw events may be gone: UTC days from the dimension rollups.
    await env.db.sql`update rollup_state set raw_dropped_before = now()`
    const store = createStore(env.db.sql)
    expect(await eventually(async () => (await store.rollup()).ran && (await store.rollupLag()).unrolled === 0, { timeoutMs: 120_000, intervalMs: 200 })).toBe(
      true,
    )
    const byCountry = await query(ready ? (await setup()).app : app, {
      site_id: 'tz-kolkata',
      date_range: ['2025-02-25', '2025-03-04'],
      metrics: ['visitors', 'events'],
      dimensions: ['country', 'time:day'],
      filters: [['is', 'country', ['IN']]],
    })
    expect(byCountry.meta.timezone).toBe('UTC')
    const india = oracle(
      sent,
      'tz-kolkata',
      (ms) => new Date(ms).toISOString().slice(0, 10),
      (e) => e.country === 'IN',
    )
    expectMatches(byCountry.results, india, days('2025-02-25', '2025-03-04'), 'utc country')
  }, 180_000)

  test('a comparison whose earlier period is past the raw events kept answers both periods in UTC days', async () => {
    const { app, sent } = await setup()
    // Raw events kept from 2025-03-05 12:00: the current period can follow New York, the one before cannot.
    await env.db.sql`update rollup_state set raw_dropped_before = '2025-03-05T12:00:00Z'`
    const answer = (await query(app, {
      site_id: 'tz-ny',
      date_range: ['2025-03-06', '2025-03-10'],
      metrics: ['visitors', 'events'],
      dimensions: ['country'],
      include: { comparisons: { mode: 'previous_period' } },
    })) as unknown as {
      results: { dimensions: string[]; metrics: number[]; comparison: { metrics: number[] } }[]
      meta: { timezone: string; date_range: [string, string]; comparison: { date_range: [string, string] } }
    }
    expect(answer.meta.timezone).toBe('UTC')
    expect(answer.meta.date_range).toEqual(['2025-03-06T00:00:00.000Z', '2025-03-11T00:00:00.000Z'])
    expect(answer.meta.comparison.date_range).toEqual(['2025-03-01T00:00:00.000Z', '2025-03-06T00:00:00.000Z'])
    const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10)
    const inDays = (from: string, to: string) => (e: Event) => utcDay(Date.parse(e.timestamp)) >= from && utcDay(Date.parse(e.timestamp)) <= to
    const byCountry = (from: string, to: string) =>
      new Map(
        ['IN', 'US'].map((c) => [
          c,
          oracle(
            sent,
            'tz-ny',
            () => c,
            (e) => e.country === c && inDays(from, to)(e),
          ).get(c)!,
        ]),
      )
    const now = byCountry('2025-03-06', '2025-03-10')
    const before = byCountry('2025-03-01', '2025-03-05')
    expectMatches(answer.results, now, ['IN', 'US'], 'current')
    expectMatches(
      answer.results.map((r) => ({ dimensions: r.dimensions, metrics: r.comparison.metrics })),
      before,
      ['IN', 'US'],
      'previous',
    )
  }, 180_000)
})
