import { describe, expect, test } from 'bun:test'
import type { Event } from '../event/event.ts'
import { createStore } from '../store/store.ts'
import { isolated } from '../testkit/testkit.ts'
import { parseQuery, type Query, QueryRefusedError } from './query.ts'

const env = isolated()
const NOW = new Date('2025-03-10T12:00:00Z')
let n = 0
// Tests in this file share a database: each seeds a site of its own.
let site = 'q-site'
const ev = (over: Partial<Event>): Event => ({
  event_id: crypto.randomUUID(),
  site_id: site,
  event_type: 'pageview',
  path: '/',
  user_id: `u-${n++}`,
  timestamp: '2025-03-01T10:00:00.000Z',
  received_at: NOW.getTime(),
  ...over,
})
const q = (body: Record<string, unknown>): Query => {
  const r = parseQuery({ site_id: site, date_range: ['2025-03-01', '2025-03-31'], metrics: ['visitors', 'pageviews', 'events'], ...body }, NOW)
  if (!r.ok) throw new Error(JSON.stringify(r.problems))
  return r.query
}

async function seed() {
  site = `q-site-${n++}`
  const store = createStore(env.db.sql)
  await store.insertEvents([
    ev({ source: 'Google', country: 'DE', browser: 'Chrome', user_id: 'a' }),
    ev({ source: 'Google', country: 'DE', browser: 'Firefox', user_id: 'a', path: '/pricing' }),
    ev({ source: 'Google', country: 'FR', browser: 'Chrome', user_id: 'b', timestamp: '2025-03-02T08:00:00.000Z' }),
    ev({ source: 'Hacker News', country: 'US', browser: 'Safari', user_id: 'c' }),
    ev({ source: 'Direct / None', user_id: 'd', event_type: 'signup', props: { plan: 'pro' } }),
    ev({ source: 'Direct / None', user_id: 'e', event_type: 'signup', props: { plan: 'free' } }),
    ev({ source: 'Google', country: 'DE', user_id: 'f', timestamp: '2025-02-27T10:00:00.000Z' }),
  ])
  return store
}

describe('POST /v1/query answers', () => {
  test('totals, breakdowns, filters and time series alike before and after the rollup', async () => {
    const store = await seed()
    const cases: [Record<string, unknown>, unknown][] = [
      [{}, [{ dimensions: [], metrics: [5, 4, 6] }]],
      [
        { dimensions: ['source'] },
        [
          { dimensions: ['Direct / None'], metrics: [2, 0, 2] },
          { dimensions: ['Google'], metrics: [2, 3, 3] },
          { dimensions: ['Hacker News'], metrics: [1, 1, 1] },
        ],
      ],
      [{ filters: [['is', 'country', ['DE']]] }, [{ dimensions: [], metrics: [1, 2, 2] }]],
      [{ filters: [['is_not', 'country', ['DE']]], metrics: ['events'] }, [{ dimensions: [], metrics: [4] }]],
      [{ filters: [['is', 'country', ['(none)']]], metrics: ['events'] }, [{ dimensions: [], metrics: [2] }]],
      [{ filters: [['contains', 'source', ['oog']]], metrics: ['events'] }, [{ dimensions: [], metrics: [3] }]],
      [
        { dimensions: ['props:plan'], metrics: ['events'] },
        [
          { dimensions: ['free'], metrics: [1] },
          { dimensions: ['pro'], metrics: [1] },
        ],
      ],
      [
        { dimensions: ['event_type'], metrics: ['events'] },
        [
          { dimensions: ['pageview'], metrics: [4] },
          { dimensions: ['signup'], metrics: [2] },
        ],
      ],
      [
        { dimensions: ['time:day'], metrics: ['pageviews'] },
        [
          { dimensions: ['2025-03-01'], metrics: [3] },
          { dimensions: ['2025-03-02'], metrics: [1] },
        ],
      ],
      [
        { dimensions: ['country', 'time:month'], metrics: ['events'], filters: [['is', 'country', ['DE', 'FR']]] },
        [
          { dimensions: ['DE', '2025-03-01'], metrics: [2] },
          { dimensions: ['FR', '2025-03-01'], metrics: [1] },
        ],
      ],
      [
        { dimensions: ['browser'], metrics: ['events'], filters: [['is', 'source', ['Google']]] },
        [
          { dimensions: ['Chrome'], metrics: [2] },
          { dimensions: ['Firefox'], metrics: [1] },
        ],
      ],
      [{ date_range: 'all', metrics: ['events'] }, [{ dimensions: [], metrics: [7] }]],
      [{ date_range: 'all', metrics: ['events'], filters: [['is', 'source', ['Google']]] }, [{ dimensions: [], metrics: [4] }]],
    ]
    for (const when of ['before the rollup', 'after the rollup']) {
      if (when === 'after the rollup') expect((await store.rollup()).events).toBe(7)
      for (const [body, results] of cases) {
        const answer = await store.query(q(body), { now: NOW })
        expect({ when, body, results: answer.results }).toEqual({ when, body, results: results as never })
      }
    }
  })

  test('two dimensions at once once raw events may be gone is a 422 needs_raw_events; one dimension still answers', async () => {
    const store = await seed()
    await store.rollup()
    await env.db.sql`update rollup_state set raw_dropped_before = '2025-03-05T00:00:00Z'`
    const both = q({ dimensions: ['browser'], filters: [['is', 'source', ['Google']]] })
    expect(store.query(both, { now: NOW })).rejects.toMatchObject({ code: 'needs_raw_events' })
    expect(
      await store.query(q({ date_range: ['2025-03-06', '2025-03-10'], dimensions: ['browser'], filters: [['is', 'source', ['Google']]] }), { now: NOW }),
    ).toMatchObject({
      meta: { source: 'raw_events' },
    })
    expect((await store.query(q({ dimensions: ['browser'] }), { now: NOW })).meta.source).toBe('rollups')
  })

  test('source with country, a kept pair, is answered from rollups as raw events answer it, also once raw events may be gone', async () => {
    const store = await seed()
    const cases: [Record<string, unknown>, unknown][] = [
      [{ dimensions: ['source'], filters: [['is', 'country', ['DE']]] }, [{ dimensions: ['Google'], metrics: [1, 2, 2] }]],
      [
        { dimensions: ['country'], filters: [['is_not', 'source', ['Hacker News']]], metrics: ['events', 'visitors'] },
        [
          { dimensions: ['(none)'], metrics: [2, 2] },
          { dimensions: ['DE'], metrics: [2, 1] },
          { dimensions: ['FR'], metrics: [1, 1] },
        ],
      ],
      [
        {
          filters: [
            ['contains', 'source', ['oog']],
            ['is', 'country', ['FR', 'DE']],
          ],
          metrics: ['events', 'visitors'],
        },
        [{ dimensions: [], metrics: [3, 2] }],
      ],
      [
        { dimensions: ['source', 'time:day'], filters: [['is', 'country', ['DE', 'FR']]], metrics: ['events'] },
        [
          { dimensions: ['Google', '2025-03-01'], metrics: [2] },
          { dimensions: ['Google', '2025-03-02'], metrics: [1] },
        ],
      ],
    ]
    const ask = async (body: Record<string, unknown>) => {
      const answer = await store.query(q(body), { now: NOW })
      answer.results.sort((x, y) => JSON.stringify(x.dimensions).localeCompare(JSON.stringify(y.dimensions)))
      return answer
    }
    for (const [body, results] of cases) expect({ body, results: (await ask(body)).results }).toEqual({ body, results: results as never })
    expect((await store.rollup()).events).toBe(7)
    await env.db.sql`update rollup_state set raw_dropped_before = '2025-03-05T00:00:00Z'`
    for (const [body, results] of cases) {
      const answer = await ask(body)
      expect({ body, results: answer.results, source: answer.meta.source }).toEqual({ body, results: results as never, source: 'rollups' })
    }
    // A pair counted only since an upgrade answers earlier ranges from raw events, which are gone here.
    await env.db.sql`update rollup_state set pairs_since = '2025-03-02T00:00:00Z'`
    expect(ask(cases[0]![0])).rejects.toMatchObject({ code: 'needs_raw_events' })
    await env.db.sql`update rollup_state set pairs_since = null, raw_dropped_before = null`
  })

  test('a kept pair is capped per value of its second dimension: a small country keeps its top sources beside a big one', async () => {
    site = `q-site-${n++}`
    const store = createStore(env.db.sql)
    await store.insertEvents([
      ...['Google', 'Google', 'Google', 'Bing', 'Bing', 'DuckDuckGo'].map((source) => ev({ source, country: 'DE' })),
      ev({ source: 'Ecosia', country: 'FR' }),
    ])
    await store.rollup({ dimCap: 2 })
    const of = async (country: string) => {
      const answer = await store.query(q({ dimensions: ['source'], filters: [['is', 'country', [country]]], metrics: ['events'] }), { now: NOW })
      return { results: answer.results, trimmed: answer.meta.trimmed_events, source: answer.meta.source }
    }
    expect(await of('FR')).toEqual({ results: [{ dimensions: ['Ecosia'], metrics: [1] }], trimmed: 0, source: 'rollups' })
    expect(await of('DE')).toEqual({
      results: [
        { dimensions: ['Google'], metrics: [3] },
        { dimensions: ['Bing'], metrics: [2] },
      ],
      trimmed: 1,
      source: 'rollups',
    })
  })

  test('rows tied under the order asked come by value, so a limit cuts the same rows on every call', async () => {
    site = `q-site-${n++}`
    const store = createStore(env.db.sql)
    const names = Array.from({ length: 40 }, (_, i) => `src-${String(i).padStart(2, '0')}`)
    await store.insertEvents([...names].reverse().map((source) => ev({ source })))
    const asked = q({ dimensions: ['source'], metrics: ['events'], order_by: [['events', 'desc']], limit: 5 })
    expect((await store.query(asked, { now: NOW })).results.map((r) => r.dimensions[0])).toEqual(names.slice(0, 5))
  })

  test('a range before dimensions were recorded is a 422 dimensions_not_recorded, while totals still answer', async () => {
    const store = await seed()
    await env.db.sql`update rollup_state set dims_since = '2025-03-02T00:00:00Z'`
    const err = await store.query(q({ dimensions: ['country'] }), { now: NOW }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryRefusedError)
    expect((err as QueryRefusedError).code).toBe('dimensions_not_recorded')
    expect((await store.query(q({}), { now: NOW })).results[0]!.metrics).toEqual([5, 4, 6])
  })

  test('visit metrics from the instant visits were first counted are a 422 visits_not_recorded, as events up to INGEST_MAX_FUTURE_MS ahead may have been counted before', async () => {
    const store = await seed()
    await env.db.sql`update rollup_state set visits_since = '2025-03-01T00:00:00Z'`
    try {
      const err = await store.query(q({ metrics: ['visits'] }), { now: NOW, maxFutureMs: 300_000 }).catch((e: unknown) => e)
      expect((err as QueryRefusedError).code).toBe('visits_not_recorded')
      expect((err as QueryRefusedError).message).toContain('2025-03-01T00:05:00.000Z')
      expect(
        (await store.query(q({ metrics: ['visits'], date_range: ['2025-03-02', '2025-03-31'] }), { now: NOW, maxFutureMs: 300_000 })).results,
      ).toHaveLength(1)
    } finally {
      await env.db.sql`update rollup_state set visits_since = null`
    }
  })
})

describe('a query body', () => {
  test('names every problem', () => {
    const r = parseQuery({ site_id: 'x', date_range: '8d', metrics: ['bounces'], dimensions: ['colour'], filters: [['equals', 'country', []]], extra: 1 })
    expect(r.ok).toBe(false)
    const fields = !r.ok ? r.problems.map((p) => p.field) : []
    expect(fields).toEqual(expect.arrayContaining(['date_range', 'metrics.0', 'dimensions.0', 'filters.0.0', 'filters.0.2', 'extra']))
  })

  test.each([
    [{ date_range: ['1970-01-01', '9998-12-31'], include: { comparisons: { mode: 'previous_period' } } }, 'include.comparisons', /before 1970-01-01/],
    [{ date_range: ['1970-03-01', '1970-03-31'], include: { comparisons: { mode: 'year_over_year' } } }, 'include.comparisons', /before 1970-01-01/],
    [{ filters: [['contains', 'referrer', ['(none)']]] }, 'filters.0', /"is" or "is_not"/],
    [
      {
        filters: [
          ['is', 'country', ['DE']],
          ['matches', 'source', ['(none)']],
        ],
      },
      'filters.1',
      /"is" or "is_not"/,
    ],
    [{ date_range: 'realtime', dimensions: ['entry_page'] }, 'date_range', /entry_page/],
    [{ date_range: 'realtime', filters: [['is', 'exit_page', ['/']]] }, 'date_range', /exit_page/],
  ])('refuses %j, naming %p', (body, field, message) => {
    const r = parseQuery({ site_id: 'x', date_range: ['2025-03-01', '2025-03-31'], metrics: ['events'], ...body }, NOW)
    expect(r.ok ? [] : r.problems).toContainEqual({ field, message: expect.stringMatching(message) })
  })

  test('compares "month" on the 10th with the 1st to the 10th of the month before, in the site\'s calendar', () => {
    const compared = (date_range: unknown, timezone = 'UTC') => {
      const r = parseQuery({ site_id: 'x', date_range, metrics: ['events'], include: { comparisons: { mode: 'previous_period' } } }, { now: NOW, timezone })
      return r.ok ? r.query.comparedDates : r.problems
    }
    expect(compared('month')).toEqual(['2025-02-01', '2025-02-10'])
    expect(compared('7d')).toEqual(['2025-02-25', '2025-03-03'])
    // 2025-03-10 12:00 UTC is already the 11th in Kiritimati (+14).
    expect(compared('month', 'Pacific/Kiritimati')).toEqual(['2025-02-01', '2025-02-11'])
  })

  test('keeps a comparison that starts on 1970-01-01, and "(none)" with is', () => {
    const ok = (body: Record<string, unknown>) => parseQuery({ site_id: 'x', metrics: ['events'], ...body }, NOW).ok
    expect(ok({ date_range: ['1970-01-02', '1970-01-02'], include: { comparisons: { mode: 'previous_period' } } })).toBe(true)
    expect(ok({ date_range: 'day', filters: [['is', 'referrer', ['(none)']]] })).toBe(true)
  })

  test('resolves preset ranges to whole UTC days ending today', () => {
    const range = (date_range: unknown) => {
      const r = parseQuery({ site_id: 'x', date_range, metrics: ['events'] }, NOW)
      return r.ok ? [r.query.from?.toISOString(), r.query.to?.toISOString()] : r.problems
    }
    expect(range('day')).toEqual(['2025-03-10T00:00:00.000Z', '2025-03-11T00:00:00.000Z'])
    expect(range('7d')).toEqual(['2025-03-04T00:00:00.000Z', '2025-03-11T00:00:00.000Z'])
    expect(range('month')).toEqual(['2025-03-01T00:00:00.000Z', '2025-04-01T00:00:00.000Z'])
    expect(range('12mo')).toEqual(['2024-04-01T00:00:00.000Z', '2025-04-01T00:00:00.000Z'])
    expect(range(['2025-01-01', '2025-01-31'])).toEqual(['2025-01-01T00:00:00.000Z', '2025-02-01T00:00:00.000Z'])
    expect(range('all')).toEqual([undefined, undefined])
  })
})
