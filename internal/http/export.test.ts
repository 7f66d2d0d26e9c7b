import { describe, expect, test } from 'bun:test'
import { unzipSync } from 'fflate'
import type { Event } from '../event/event.ts'
import { silentLogger } from '../log/log.ts'
import { parseCsv } from '../query/csv.ts'
import { createQueue } from '../queue/queue.ts'
import { createStore } from '../store/store.ts'
import { eventually, isolated } from '../testkit/testkit.ts'
import { createApp } from './http.ts'

const env = isolated()
const TOKEN = 'export-token'
const SITE = 'export-site'
type Answer = {
  results: { dimensions: string[]; metrics: number[]; comparison?: { dimensions: string[]; metrics: number[]; change: (number | null)[] } }[]
  meta: Record<string, unknown>
}

let seeded: Promise<ReturnType<typeof createApp>> | null = null
/** Events over two fortnights, some still raw: sources, countries, pages, a prop with a formula-like value. */
function app() {
  seeded ??= (async () => {
    const store = createStore(env.db.sql)
    let n = 0
    const ev = (day: string, i: number): Event => ({
      event_id: crypto.randomUUID(),
      site_id: SITE,
      event_type: i % 5 === 0 ? 'signup' : 'pageview',
      path: `/p/${i % 4}`,
      user_id: `u${(n++ * 7) % 23}`,
      timestamp: `${day}T${String(i % 24).padStart(2, '0')}:15:00.000Z`,
      received_at: Date.now(),
      source: ['Google', 'Direct / None', 'Hacker, "News"'][i % 3],
      country: ['DE', 'US'][i % 2],
      props: { formula: i % 7 === 0 ? '=1+1' : 'plain' },
    })
    const days = Array.from({ length: 28 }, (_, d) => new Date(Date.UTC(2025, 1, 15 + d)).toISOString().slice(0, 10))
    const events = days.flatMap((day, d) => Array.from({ length: 3 + (d % 5) }, (_, i) => ev(day, i + d)))
    await store.insertEvents(events.slice(0, 60))
    await store.rollup()
    await store.insertEvents(events.slice(60))
    return createApp(
      { queue: createQueue(env.r.redis, env.r.queue), store, log: silentLogger(), checks: {} },
      { ingest: { bodyLimitBytes: 65536, batchMax: 100, maxFutureMs: 300_000 }, statsToken: TOKEN },
    )
  })()
  return seeded
}
const auth = { authorization: `Bearer ${TOKEN}` }
const post = async (body: Record<string, unknown>, headers: Record<string, string> = {}, path = '/v1/query') =>
  (await app()).request(path, {
    method: 'POST',
    body: JSON.stringify({ site_id: SITE, ...body }),
    headers: { ...auth, 'content-type': 'application/json', ...headers },
  })
const json = async (body: Record<string, unknown>) => {
  const res = await post(body)
  expect(res.status).toBe(200)
  return (await res.json()) as Answer
}
/** A JSON answer as the CSV rows it must equal: the header, then the cells as text, formula-like text defused. */
function asRows(body: Record<string, unknown>, answer: Answer): string[][] {
  const dims = (body.dimensions as string[] | undefined) ?? []
  const metrics = body.metrics as string[]
  const compared = answer.results.some((r) => r.comparison)
  const text = (x: string | number | null) => (x === null ? '' : typeof x === 'number' ? String(x) : /^[=+\-@\t\r]/.test(x) ? `'${x}` : x)
  return [
    [...dims, ...metrics.flatMap((m) => (compared ? [m, `${m}_comparison`, `${m}_change`] : [m]))],
    ...answer.results.map((r) => [
      ...r.dimensions.map(text),
      ...r.metrics.flatMap((x, i) => (compared ? [x, r.comparison!.metrics[i]!, r.comparison!.change[i]!] : [x]).map(text)),
    ]),
  ]
}

/** Visits count as the rollup merges their events: every event counted (another file's transaction may hold the rollup's horizon a while). */
async function rolledUp() {
  const store = createStore(env.db.sql)
  const caughtUp = async () => {
    await store.rollup()
    return (await store.rollupLag()).unrolled === 0 || null
  }
  expect(await eventually(caughtUp, { timeoutMs: 60_000 })).toBe(true)
}
/** An export's zip (a 200), its files and each file's CSV rows. */
const zipOf = async (res: Response) => {
  expect(res.status).toBe(200)
  const files = unzipSync(new Uint8Array(await res.arrayBuffer()))
  return { files, read: (name: string) => parseCsv(new TextDecoder().decode(files[name])) }
}
const exported = async (a: Awaited<ReturnType<typeof app>>, query: string) =>
  zipOf(await a.request(`/v1/export?site_id=export-site&${query}`, { headers: auth }))
/** The /v1/query of an export's breakdown file. */
const fileQuery = (dimension: string, date_range: unknown, filters: unknown[] = []) => ({
  date_range,
  filters,
  metrics: ['visitors', 'pageviews', 'events'],
  dimensions: [dimension],
  order_by: [['visitors', 'desc']],
  limit: 10_000,
})
const QUERIES: Record<string, unknown>[] = [
  { date_range: ['2025-03-01', '2025-03-14'], metrics: ['visitors', 'pageviews', 'events'] },
  { date_range: ['2025-03-01', '2025-03-14'], metrics: ['visitors', 'events'], dimensions: ['source'] },
  { date_range: ['2025-02-15', '2025-03-14'], metrics: ['pageviews'], dimensions: ['time:day'] },
  { date_range: ['2025-02-15', '2025-03-14'], metrics: ['events'], dimensions: ['country', 'time:month'] },
  { date_range: ['2025-02-15', '2025-03-14'], metrics: ['events'], dimensions: ['props:formula'] },
  { date_range: ['2025-03-01', '2025-03-14'], metrics: ['visitors', 'events'], dimensions: ['path'], include: { comparisons: { mode: 'previous_period' } } },
  { date_range: ['2025-03-01', '2025-03-14'], metrics: ['visitors'], dimensions: ['time:day'], include: { comparisons: { mode: 'previous_period' } } },
]

describe('CSV export', () => {
  test('of any /v1/query answer equals its JSON, with Accept: text/csv, ?format=csv, and GET ?query= for plain links', async () => {
    for (const body of QUERIES) {
      const answer = await json(body)
      expect(answer.results.length).toBeGreaterThan(0)
      const expected = asRows(body, answer)
      const byAccept = await post(body, { accept: 'text/csv' })
      expect(byAccept.headers.get('content-type')).toBe('text/csv; charset=utf-8')
      expect(byAccept.headers.get('content-disposition')).toBe('attachment; filename="export-site-query.csv"')
      const byParam = await post(body, {}, '/v1/query?format=csv')
      const byGet = await (await app()).request(`/v1/query?format=csv&query=${encodeURIComponent(JSON.stringify({ site_id: SITE, ...body }))}`, {
        headers: auth,
      })
      for (const res of [byAccept, byParam, byGet]) {
        expect(res.status).toBe(200)
        expect({ body, rows: parseCsv(await res.text()) }).toEqual({ body, rows: expected })
      }
    }
  })

  test('quotes commas and quotes, and defuses text a spreadsheet would run as a formula', async () => {
    const sources = await (await post({ date_range: ['2025-03-01', '2025-03-14'], metrics: ['events'], dimensions: ['source'] }, { accept: 'text/csv' })).text()
    expect(sources).toContain('"Hacker, ""News"""')
    const props = await (
      await post({ date_range: ['2025-02-15', '2025-03-14'], metrics: ['events'], dimensions: ['props:formula'] }, { accept: 'text/csv' })
    ).text()
    expect(props).toContain("\r\n'=1+1,")
  })

  test('of a whole dashboard is a zip of CSVs, each equal to its /v1/query answer, under the same token rules', async () => {
    const a = await app()
    const res = await a.request('/v1/export?site_id=export-site&date_range=2025-03-01,2025-03-14&f=country:DE', { headers: auth })
    expect(res.headers.get('content-type')).toBe('application/zip')
    const { files, read } = await zipOf(res)
    expect(Object.keys(files)).toEqual(expect.arrayContaining(['visitors.csv', 'sources.csv', 'pages.csv', 'countries.csv', 'devices.csv', 'browsers.csv']))
    const filters = [['is', 'country', ['DE']]]
    const range = ['2025-03-01', '2025-03-14']
    const metrics = ['visitors', 'pageviews', 'events']
    const series = { date_range: range, filters, metrics, dimensions: ['time:day'] }
    expect(read('visitors.csv')).toEqual(asRows(series, await json(series)))
    const pages = fileQuery('path', range, filters)
    expect(read('pages.csv')).toEqual(asRows(pages, await json(pages)))
    // Sources under a country filter: visits are counted by one dimension at a time, so per page view, from
    // raw events (all kept here).
    const sources = fileQuery('source', range, filters)
    expect(read('sources.csv')).toEqual(asRows(sources, await json(sources)))
    expect(files['errors.csv']).toBeUndefined()
    expect((await a.request('/v1/export?site_id=export-site&date_range=30d')).status).toBe(401)
    expect((await a.request('/v1/export?site_id=export-site&date_range=8d', { headers: auth })).status).toBe(400)
  })

  test('counts sources by visit, as the dashboard does, and takes a filter on how visits came', async () => {
    const a = await app()
    await rolledUp()
    const range = ['2025-02-15', '2025-02-28']
    for (const [f, filters] of [
      ['', []],
      ['&f=visit:source:Google', [['is', 'visit:source', ['Google']]]],
    ] as const) {
      const { files, read } = await exported(a, `date_range=2025-02-15,2025-02-28${f}`)
      const sources = fileQuery('visit:source', range, [...filters])
      expect(read('sources.csv')).toEqual(asRows(sources, await json(sources)))
      expect(read('sources.csv')[0]![0]).toBe('visit:source')
      expect(read('sources.csv').length).toBeGreaterThan(1)
      // Under a filter on how visits came, the other files count per page view, as the dashboard does.
      const countries = fileQuery(
        'country',
        range,
        filters.map(([op, d, v]) => [op, d.replace('visit:', ''), v]),
      )
      expect(read('countries.csv')).toEqual(asRows(countries, await json(countries)))
      expect(files['errors.csv']).toBeUndefined()
    }
  })

  test('counts sources per page view, not as an error, over a range from before the upgrade that kept visitors by source', async () => {
    const a = await app()
    await env.db.sql`update rollup_state set visit_sketches_since = now()`
    try {
      const { files, read } = await exported(a, 'date_range=2025-02-15,2025-02-28')
      const sources = fileQuery('source', ['2025-02-15', '2025-02-28'])
      expect(read('sources.csv')).toEqual(asRows(sources, await json(sources)))
      expect(files['errors.csv']).toBeUndefined()
    } finally {
      await env.db.sql`update rollup_state set visit_sketches_since = null`
    }
  })

  test('with a comparison whose period before is from before that upgrade, counts sources by visit without the comparison', async () => {
    const a = await app()
    await rolledUp()
    await env.db.sql`update rollup_state set visit_sketches_since = '2025-02-14T00:00:00Z'`
    try {
      const { files, read } = await exported(a, 'date_range=2025-02-15,2025-02-28&compare=previous_period')
      const sources = fileQuery('visit:source', ['2025-02-15', '2025-02-28'])
      expect(read('sources.csv')).toEqual(asRows(sources, await json(sources)))
      expect(read('sources.csv')[0]).toEqual(['visit:source', 'visitors', 'pageviews', 'events'])
      // The other files keep their comparison.
      expect(read('countries.csv')[0]).toContain('visitors_comparison')
      expect(files['errors.csv']).toBeUndefined()
    } finally {
      await env.db.sql`update rollup_state set visit_sketches_since = null`
    }
  })

  test('under a filter on how visits came, in realtime or beside an entry page filter, answers each file once per page view or lists it', async () => {
    const a = await app()
    const realtime = await exported(a, 'date_range=realtime&f=visit:source:Google')
    const sources = fileQuery('source', 'realtime', [['is', 'source', ['Google']]])
    expect(realtime.read('sources.csv')).toEqual(asRows(sources, await json(sources)))
    // Visit figures take one dimension at a time, and page views have no entry page: the source files cannot be answered either way.
    const both = await exported(a, 'date_range=2025-02-15,2025-02-28&f=visit:source:Google&f=entry_page:/p/0')
    expect(both.files['sources.csv']).toBeUndefined()
    expect(both.read('errors.csv').map((row) => row[0])).toContain('sources.csv')
  })

  test('of one day older than the hourly detail kept has that day as one row, not a refusal of the whole export', async () => {
    await app()
    // Hours kept for 90 days, and 2025-03-01 long before.
    const a = createApp(
      { queue: createQueue(env.r.redis, env.r.queue), store: createStore(env.db.sql), log: silentLogger(), checks: {} },
      { ingest: { bodyLimitBytes: 65536, batchMax: 100, maxFutureMs: 300_000 }, statsToken: TOKEN, hourRollupDays: 90 },
    )
    const post = (body: Record<string, unknown>) =>
      a.request('/v1/query', { method: 'POST', body: JSON.stringify({ site_id: SITE, ...body }), headers: { ...auth, 'content-type': 'application/json' } })
    const json = async (body: Record<string, unknown>) => (await (await post(body)).json()) as Answer
    const { files, read } = await exported(a, 'date_range=2025-03-01,2025-03-01')
    const hourly = await post({ date_range: ['2025-03-01', '2025-03-01'], metrics: ['visitors'], dimensions: ['time:hour'] })
    expect(hourly.status).toBe(422)
    const series = { date_range: ['2025-03-01', '2025-03-01'], filters: [], metrics: ['visitors', 'pageviews', 'events'], dimensions: ['time:day'] }
    expect(read('visitors.csv')).toEqual(asRows(series, await json(series)))
    expect(read('visitors.csv')).toHaveLength(2)
    expect(files['errors.csv']).toBeUndefined()
  })

  test('of the realtime view has one row of totals in visitors.csv, and the breakdowns', async () => {
    const { files, read } = await exported(await app(), 'date_range=realtime')
    const series = { date_range: 'realtime', metrics: ['visitors', 'pageviews', 'events'], filters: [] }
    expect(read('visitors.csv')).toEqual(asRows(series, await json(series)))
    expect(read('visitors.csv')).toHaveLength(2)
    expect(Object.keys(files)).toEqual(expect.arrayContaining(['sources.csv', 'pages.csv']))
  })
})

describe('period comparison', () => {
  test('gives each result the figures of two separate queries, and the change in percent', async () => {
    for (const [mode, previous] of [
      ['previous_period', ['2025-02-15', '2025-02-28']],
      ['year_over_year', ['2024-03-01', '2024-03-14']],
    ] as const) {
      for (const dimensions of [[], ['source'], ['time:day'], ['country', 'time:day']]) {
        const body = { date_range: ['2025-03-01', '2025-03-14'], metrics: ['visitors', 'pageviews', 'events'], dimensions }
        const compared = await json({ ...body, include: { comparisons: { mode } } })
        const now = await json(body)
        const before = await json({ ...body, date_range: previous, limit: 10_000 })
        expect(compared.meta.comparison).toEqual({
          mode,
          date_range: [`${previous[0]}T00:00:00.000Z`, new Date(Date.parse(previous[1]) + 86_400_000).toISOString()],
        })
        expect(compared.results.map((r) => ({ dimensions: r.dimensions, metrics: r.metrics }))).toEqual(now.results)
        const dayIndex = (d: string) => (Date.parse(d) - Date.parse(body.date_range[0]!)) / 86_400_000
        for (const r of compared.results) {
          const time = dimensions.indexOf('time:day')
          const match = before.results.find((b) =>
            b.dimensions.every((d, i) =>
              i === time ? (Date.parse(d) - Date.parse(previous[0])) / 86_400_000 === dayIndex(r.dimensions[i]!) : d === r.dimensions[i],
            ),
          )
          const expected = match?.metrics ?? r.metrics.map(() => 0)
          expect({ mode, dimensions: r.dimensions, comparison: r.comparison!.metrics }).toEqual({ mode, dimensions: r.dimensions, comparison: expected })
          if (match) expect(r.comparison!.dimensions).toEqual(match.dimensions)
          r.metrics.forEach((x, i) => {
            const b = expected[i]!
            expect(r.comparison!.change[i]).toBe(b === 0 ? (x === 0 ? 0 : null) : Math.round(((x - b) / b) * 1000) / 10)
          })
        }
      }
    }
  })

  test('over "all" is a 400 naming the comparison', async () => {
    const res = await post({ date_range: 'all', metrics: ['events'], include: { comparisons: { mode: 'previous_period' } } })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { details: { field: string }[] }).details[0]!.field).toBe('include.comparisons')
  })
})
