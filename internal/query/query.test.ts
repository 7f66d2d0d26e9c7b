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

  test('a range before dimensions were recorded is a 422 dimensions_not_recorded, while totals still answer', async () => {
    const store = await seed()
    await env.db.sql`update rollup_state set dims_since = '2025-03-02T00:00:00Z'`
    const err = await store.query(q({ dimensions: ['country'] }), { now: NOW }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryRefusedError)
    expect((err as QueryRefusedError).code).toBe('dimensions_not_recorded')
    expect((await store.query(q({}), { now: NOW })).results[0]!.metrics).toEqual([5, 4, 6])
  })
})

describe('a query body', () => {
  test('names every problem', () => {
    const r = parseQuery({ site_id: 'x', date_range: '8d', metrics: ['bounces'], dimensions: ['colour'], filters: [['equals', 'country', []]], extra: 1 })
    expect(r.ok).toBe(false)
    const fields = !r.ok ? r.problems.map((p) => p.field) : []
    expect(fields).toEqual(expect.arrayContaining(['date_range', 'metrics.0', 'dimensions.0', 'filters.0.0', 'filters.0.2', 'extra']))
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
