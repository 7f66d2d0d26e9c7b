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
})
