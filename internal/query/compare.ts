import type { Granularity } from '../store/buckets.ts'
import { NONE } from '../store/dimensions.ts'
import { type Dates, datesToRange, plusDays, plusMonths } from './dates.ts'
import { QueryRefusedError } from './errors.ts'
import { type ComparedResult, type Query, type QueryResult, VISIT_METRICS } from './query.ts'

/**
 * The most rows read of the comparison period at first. Values of the answer beyond them
 * (a period with more distinct values) are then read by name, so every value finds its own.
 */
export const COMPARISON_LIMIT = 10_000

/**
 * Answers a query and, when it asks for a comparison, the same query over the comparison
 * period, as two ordinary queries. Each result gets the comparison's figures for the same
 * dimension value and the same place in time (the nth day of one period against the nth of
 * the other; days a year apart by calendar date), and the change of each metric in percent;
 * a bucket with no place in the other period gets a null comparison.
 */
export async function withComparison(q: Query, run: (q: Query) => Promise<QueryResult>): Promise<QueryResult> {
  // parseQuery sets comparedDates whenever a comparison has dates to compare.
  if (!q.comparison || !q.dates || !q.comparedDates) return run(q)
  const mode = q.comparison
  const dates = q.comparedDates
  const before = (asked: Query): Query => {
    const [from, to] = datesToRange(dates, asked.timezone)
    return { ...asked, dates, from, to, comparison: null, comparedDates: null, limit: COMPARISON_LIMIT }
  }
  const both = (asked: Query) => Promise.all([run(asked), run(before(asked))])
  let [current, previous] = await both(q)
  // A period past the hourly detail kept is answered in UTC days (meta.timezone): then both
  // are, so that like days are compared with like.
  if (current.meta.timezone !== previous.meta.timezone) {
    const [from, to] = datesToRange(q.dates, 'UTC')
    q = { ...q, timezone: 'UTC', from, to }
    ;[current, previous] = await both(q)
  }
  const timeAt = q.order.indexOf('time')
  const valueAt = q.order.indexOf('dimension')
  const currentStart = current.meta.date_range?.[0] ?? ''
  const previousStart = previous.meta.date_range?.[0] ?? ''
  // A bucket's place: its dimension value, and its time. Days a year apart are matched by
  // calendar date (29 February has no partner); other buckets by position, the nth of one
  // period against the nth of the other, and a bucket past the other period's last has none.
  const byDate = mode === 'year_over_year' && q.time === 'day'
  const previousBuckets = timeAt < 0 ? 0 : bucketCount(q.time!, dates, previous.meta.date_range)
  const partnerTime = (label: string): string | null => {
    if (byDate) return label.endsWith('-02-29') ? null : `${String(Number(label.slice(0, 4)) - 1).padStart(4, '0')}${label.slice(4)}`
    const n = bucketIndex(label, q.time!, q.dates!, currentStart)
    return n < previousBuckets ? labelAt(n, q.time!, dates, previousStart) : null
  }
  const key = (dims: (string | null)[], time: string | null) => `${valueAt < 0 ? '' : dims[valueAt]}|${time ?? ''}`
  const ownTime = (dims: (string | null)[]) => (timeAt < 0 ? null : (dims[timeAt] as string))
  /** The place in the period before that a current result is compared with: null when there is none. */
  const partnerOf = (dims: (string | null)[]) => {
    if (timeAt < 0) return key(dims, null)
    const time = partnerTime(dims[timeAt]!)
    return time === null ? null : key(dims, time)
  }
  /** A row of the period before, keyed by its label as partnerTime writes it (an hour can be written more than one way). */
  const previousKey = (dims: (string | null)[]) => {
    const time = ownTime(dims)
    if (time === null || byDate) return key(dims, time)
    return key(dims, labelAt(bucketIndex(time, q.time!, dates, previousStart), q.time!, dates, previousStart))
  }
  const byPlace = new Map(previous.results.map((r) => [previousKey(r.dimensions), r]))
  // The first read may have stopped short of values the answer has: read those by name. Not
  // by event type or path for a conversion rate (an added filter would become the goal) or
  // visit metrics (which take one value of those), whose missing values show 0.
  const oneValueOnly = (q.dimension === 'event_type' || q.dimension === 'path') && q.metrics.some((m) => m === 'conversion_rate' || VISIT_METRICS.includes(m))
  if (q.dimension && valueAt >= 0 && previous.results.length >= COMPARISON_LIMIT && !oneValueOnly) {
    const missing = [
      ...new Set(
        current.results
          .filter((r) => {
            const partner = partnerOf(r.dimensions)
            return partner !== null && !byPlace.has(partner)
          })
          .map((r) => r.dimensions[valueAt]!),
      ),
    ]
    if (missing.length) {
      const named = { op: 'is' as const, dim: q.dimension, values: missing.map((v) => (v === NONE ? '' : v)) }
      // Every bucket of those values: the read is not cut at the first read's limit (its rows are all read anyway, then sliced).
      const more = await run({ ...before(q), filters: [...q.filters, named], limit: Number.MAX_SAFE_INTEGER }).catch((err: unknown) => {
        // A combination the first read answered cannot be refused for one more filter on its own dimension; should one be, the values show 0.
        if (err instanceof QueryRefusedError) return null
        throw err
      })
      for (const r of more?.results ?? []) byPlace.set(previousKey(r.dimensions), r)
    }
  }
  const results = current.results.map((r) => {
    const partner = partnerOf(r.dimensions)
    // No bucket to compare with (29 February a year on, the 31st of a month against a shorter one).
    if (partner === null) return { ...r, comparison: null }
    const match = byPlace.get(partner)
    const dimensions = match?.dimensions ?? r.dimensions.map((d, i) => (i === timeAt ? partnerTime(d!) : d))
    const metrics = match?.metrics ?? r.metrics.map(() => 0)
    // A rate of a place with no row is no rate at all (no visits, no visitors): its change is unknown, not the whole rate.
    const changes = r.metrics.map((x, i) => (!match && RATES.includes(q.metrics[i]!) ? null : change(x, metrics[i]!, q.metrics[i]!)))
    const comparison: ComparedResult = { dimensions, metrics, change: changes }
    return { ...r, comparison }
  })
  return { results, meta: { ...current.meta, comparison: { mode, date_range: previous.meta.date_range! } } }
}

/** Metrics that are percentages already: their change is the difference, in percentage points. */
const RATES: readonly string[] = ['bounce_rate', 'conversion_rate']

/**
 * The change from `before` to `now` in percent, to one decimal; 0 from 0 to 0, null from 0
 * to more. For a rate (bounce_rate, conversion_rate) the difference in percentage points:
 * a bounce rate from 40 % to 44 % is +4, not +10 %.
 */
export function change(now: number, before: number, metric = ''): number | null {
  if (RATES.includes(metric)) return Math.round((now - before) * 10) / 10
  if (before === 0) return now === 0 ? 0 : null
  return Math.round(((now - before) / before) * 1000) / 10
}

/** Which bucket of its period a time label is: 0 for the period's first day (month, year, hour). */
function bucketIndex(label: string, g: Granularity, [first]: Dates, startInstant: string): number {
  if (g === 'hour') return Math.round((Date.parse(label) - Date.parse(startInstant)) / 3_600_000)
  const [y, m, d] = label.split('-').map(Number) as [number, number, number]
  const [fy, fm] = first.split('-').map(Number) as [number, number]
  if (g === 'year') return y - fy
  if (g === 'month') return (y - fy) * 12 + m - fm
  return Math.round((Date.UTC(y, m - 1, d) - Date.parse(`${first}T00:00:00Z`)) / 86_400_000)
}

/** How many buckets of granularity `g` a period has: its dates, or for hours its instants [from, to). */
function bucketCount(g: Granularity, [first, last]: Dates, range: [string, string] | null | undefined): number {
  if (g === 'hour') return range ? Math.round((Date.parse(range[1]) - Date.parse(range[0])) / 3_600_000) : 0
  return bucketIndex(last, g, [first, last], '') + 1
}

/** The label of the nth bucket of a period (for a comparison bucket with no row). */
function labelAt(n: number, g: Granularity, [first]: Dates, startInstant: string): string {
  if (g === 'hour') return new Date(Date.parse(startInstant) + n * 3_600_000).toISOString().replace('.000Z', 'Z')
  if (g === 'day') return plusDays(first, n)
  if (g === 'month') return plusMonths(`${first.slice(0, 7)}-01`, n)
  return `${Number(first.slice(0, 4)) + n}-01-01`
}
