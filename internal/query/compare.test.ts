import { describe, expect, test } from 'bun:test'
import { COMPARISON_LIMIT, withComparison } from './compare.ts'
import { parseQuery, type Query, type QueryResult } from './query.ts'

const NOW = new Date('2025-03-10T12:00:00Z')

/**
 * A period's answer as runQuery gives it, from a table of (value, events) per period: ordered
 * by events, cut at the query's limit, and narrowed by an "is" filter on the dimension.
 */
function periods(table: Record<string, [string, number][]>) {
  const asked: Query[] = []
  const run = async (q: Query): Promise<QueryResult> => {
    asked.push(q)
    const named = q.filters.find((f) => f.op === 'is' && f.dim === q.dimension)
    const rows = table[q.dates![0]]!.filter(([v]) => !named || named.values.includes(v === '(none)' ? '' : v))
      .sort((a, b) => b[1] - a[1])
      .slice(0, q.limit)
    return {
      results: rows.map(([v, n]) => ({ dimensions: [v], metrics: [n] })),
      meta: { site_id: q.siteId, date_range: [q.from!.toISOString(), q.to!.toISOString()], source: 'rollups', trimmed_events: 0, timezone: q.timezone },
    }
  }
  return { run, asked }
}

const query = (body: Record<string, unknown>) => {
  const r = parseQuery({ site_id: 's', metrics: ['events'], dimensions: ['path'], include: { comparisons: { mode: 'previous_period' } }, ...body }, NOW)
  if (!r.ok) throw new Error(JSON.stringify(r.problems))
  return r.query
}

describe('comparisons', () => {
  test('a value ranked beyond the comparison limit in the period before still gets its own figures there, read by name', async () => {
    const crowd: [string, number][] = Array.from({ length: COMPARISON_LIMIT + 5 }, (_, i) => [`/crowd/${i}`, 1000 + i])
    const { run, asked } = periods({
      '2025-03-01': [
        ['/new', 50],
        ['(none)', 40],
        ['/old', 30],
      ],
      '2025-02-22': [...crowd, ['/new', 5], ['(none)', 8], ['/old', 60]],
    })
    const answer = await withComparison(query({ date_range: ['2025-03-01', '2025-03-07'] }), run)
    expect(answer.results.map((r) => [r.dimensions[0], r.metrics[0], r.comparison!.metrics[0], r.comparison!.change[0]])).toEqual([
      ['/new', 50, 5, 900],
      ['(none)', 40, 8, 400],
      ['/old', 30, 60, -50],
    ])
    // The read by name asked for the values the first read missed, "(none)" as the absent value.
    expect(asked.at(-1)!.filters).toEqual([{ op: 'is', dim: 'path', values: ['/new', '', '/old'] }])
  })

  test('does not read by name for visit metrics by path, which take one path at a time: those values show 0', async () => {
    const crowd: [string, number][] = Array.from({ length: COMPARISON_LIMIT + 5 }, (_, i) => [`/crowd/${i}`, 1000 + i])
    const { run, asked } = periods({ '2025-03-01': [['/new', 50]], '2025-02-22': [...crowd, ['/new', 5]] })
    const answer = await withComparison(query({ date_range: ['2025-03-01', '2025-03-07'], metrics: ['visits'] }), run)
    expect(answer.results[0]!.comparison!.metrics).toEqual([0])
    expect(asked).toHaveLength(2)
  })

  test('reads the period before once when it holds fewer values than the limit', async () => {
    const { run, asked } = periods({ '2025-03-01': [['/a', 2]], '2025-02-22': [['/b', 1]] })
    const answer = await withComparison(query({ date_range: ['2025-03-01', '2025-03-07'] }), run)
    expect(answer.results[0]!.comparison).toEqual({ dimensions: ['/a'], metrics: [0], change: [null] })
    expect(asked).toHaveLength(2)
  })

  /** Every day of a period as a row, its figure the day of the month. */
  const daily = async (q: Query): Promise<QueryResult> => {
    const days: string[] = []
    for (let d = q.dates![0]; d <= q.dates![1]; d = new Date(Date.parse(`${d}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10)) days.push(d)
    return {
      results: days.map((d) => ({ dimensions: [d], metrics: [Number(d.slice(8))] })),
      meta: { site_id: q.siteId, date_range: [q.from!.toISOString(), q.to!.toISOString()], source: 'rollups', trimmed_events: 0, timezone: q.timezone },
    }
  }
  const pairs = (answer: QueryResult) =>
    answer.results.map((r) => [r.dimensions[0], r.comparison ? [r.comparison.dimensions[0], r.comparison.metrics[0]] : null])

  test('compares days a year apart by calendar date, and 29 February with nothing', async () => {
    const q = query({ date_range: ['2024-02-27', '2024-03-02'], dimensions: ['time:day'], include: { comparisons: { mode: 'year_over_year' } } })
    expect(pairs(await withComparison(q, daily))).toEqual([
      ['2024-02-27', ['2023-02-27', 27]],
      ['2024-02-28', ['2023-02-28', 28]],
      ['2024-02-29', null],
      ['2024-03-01', ['2023-03-01', 1]],
      ['2024-03-02', ['2023-03-02', 2]],
    ])
  })

  test('compares the nth day with the nth, and a day past the shorter period before with nothing', async () => {
    // March 2024 against February, which had 29 days.
    const q = query({ date_range: ['2024-03-01', '2024-03-31'], dimensions: ['time:day'] })
    const answer = pairs(await withComparison(q, daily))
    expect(answer.slice(27)).toEqual([
      ['2024-03-28', ['2024-02-28', 28]],
      ['2024-03-29', ['2024-02-29', 29]],
      ['2024-03-30', null],
      ['2024-03-31', null],
    ])
  })

  test('a rate with no row in the period before has an unknown change, not the whole rate', async () => {
    const { run } = periods({ '2025-03-01': [['Google', 40]], '2025-02-22': [] })
    const answer = await withComparison(query({ date_range: ['2025-03-01', '2025-03-07'], dimensions: ['source'], metrics: ['bounce_rate'] }), run)
    expect(answer.results[0]!.comparison).toEqual({ dimensions: ['Google'], metrics: [0], change: [null] })
  })

  test('a breakdown over time reads every bucket of the values the first read missed, however many', async () => {
    const values = Array.from({ length: 1000 }, (_, i) => `/v${i}`)
    // The values most seen in January are the least seen in February: most of February's are past January's first 10,000 rows.
    const figure = (v: string, from: string) => (from === '2025-01-01' ? 1 + Number(v.slice(2)) : 2000 - Number(v.slice(2)))
    const run = async (q: Query): Promise<QueryResult> => {
      const named = q.filters.find((f) => f.op === 'is' && f.dim === 'path')
      const days = (await daily(q)).results.map((r) => r.dimensions[0]!)
      const rows = values
        .filter((v) => !named || named.values.includes(v))
        .flatMap((v) => days.map((d) => ({ dimensions: [v, d], metrics: [figure(v, q.dates![0])] })))
        .sort((a, b) => b.metrics[0]! - a.metrics[0]!)
        .slice(0, q.limit)
      return {
        results: rows,
        meta: { site_id: q.siteId, date_range: [q.from!.toISOString(), q.to!.toISOString()], source: 'rollups', trimmed_events: 0, timezone: q.timezone },
      }
    }
    // February against January: 1,000 values a day, past the first read's 10,000 rows in each.
    const answer = await withComparison(query({ date_range: ['2025-02-01', '2025-02-28'], dimensions: ['path', 'time:day'], limit: 10_000 }), run)
    expect(answer.results).toHaveLength(10_000)
    expect(answer.results.filter((r) => r.comparison?.metrics[0] !== figure(r.dimensions[0]!, '2025-01-01'))).toEqual([])
  })
})
