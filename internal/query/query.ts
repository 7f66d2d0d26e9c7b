// Package query answers POST /v1/query, shaped like Plausible's Stats API v2: metrics over a
// date range, broken down by at most one dimension and time, under filters, from the
// rollups where they can answer and from raw events where only those can.
import * as v from 'valibot'
import { SITE_ID_PATTERN, textProblem } from '../event/event.ts'
import { isCalendarDate } from '../event/timestamp.ts'
import { add, countBuckets, GRANULARITIES, type Granularity, MAX_SERIES_BUCKETS, truncate } from '../store/buckets.ts'
import { ACQUISITION, type Dimension, DIMENSIONS, isDimension, isVisitOnly, NONE, PROPS_PREFIX, VISIT_PREFIX } from '../store/dimensions.ts'
import { localDate } from '../sites/timezone.ts'
import { COMPARISONS, type Comparison, comparisonDates, type Dates, datesToRange, presetDates } from './dates.ts'

export { runQuery } from './run.ts'
export { QueryRefusedError, REFUSAL_CODES } from './errors.ts'

export const METRICS = ['visitors', 'pageviews', 'events', 'visits', 'bounce_rate', 'visit_duration', 'views_per_visit', 'conversion_rate'] as const
export type Metric = (typeof METRICS)[number]
/** The metrics of visits, counted from the visit rollups. */
export const VISIT_METRICS: readonly Metric[] = ['visits', 'bounce_rate', 'visit_duration', 'views_per_visit']
/** `matches` takes values with * wildcards (any run of characters), for goals such as /blog/*. */
export const OPERATORS = ['is', 'is_not', 'contains', 'matches'] as const
export type Operator = (typeof OPERATORS)[number]
/** realtime: the last 5 minutes (REALTIME_MS), answered from raw events. */
export const DATE_RANGES = ['realtime', 'day', '7d', '30d', 'month', '12mo', 'year', 'all'] as const
export const REALTIME_MS = 5 * 60_000

export type Filter = { op: Operator; dim: Dimension; values: string[] }

/** A query, checked and resolved to UTC instants: from/to null means all time. */
export type Query = {
  siteId: string
  from: Date | null
  to: Date | null
  metrics: Metric[]
  /** The breakdown, if any, and the time granularity, if any, with their places in `dimensions`. */
  dimension: Dimension | null
  time: Granularity | null
  /** The dimensions as asked, for the order of each result's `dimensions`. */
  order: ('dimension' | 'time')[]
  filters: Filter[]
  orderBy: { key: Metric | 'dimension' | 'time'; desc: boolean }[]
  limit: number
  /** date_range "realtime": from/to are the last REALTIME_MS, and only raw events answer. */
  realtime: boolean
  /** The site's time zone: its local days bound the range and the day, month and year buckets (see internal/sites/timezone.ts). */
  timezone: string
  /** The range as inclusive local dates; null for all time. */
  dates: Dates | null
  /** The period to answer the same query for alongside, if any. */
  comparison: Comparison | null
  /** Its dates: for a range still in progress, as much of it as has passed of the range (comparisonDates). */
  comparedDates: Dates | null
}

/** One result's figures for the comparison period: its buckets' labels, its metrics, and the change in percent (null from zero). */
export type ComparedResult = { dimensions: (string | null)[]; metrics: number[]; change: (number | null)[] }

export type QueryResult = {
  results: { dimensions: (string | null)[]; metrics: number[]; comparison?: ComparedResult | null }[]
  meta: {
    site_id: string
    date_range: [string, string] | null
    /** Where the answer came from: the rollups (plus raw events not yet rolled up), or raw events alone. */
    source: 'rollups' | 'raw_events'
    /**
     * Events of values trimmed from the dimension rollups (ROLLUP_DIM_CAP) in the range: a
     * value's count, or a filtered total, may be up to this much low. 0 when nothing was trimmed.
     */
    trimmed_events: number
    /**
     * With visit metrics (or entry and exit pages): visits of values trimmed from the visit
     * rollups (ROLLUP_DIM_CAP) in the range, which any value's visits may be up to this much low.
     */
    trimmed_visits?: number
    /** The time zone whose days the range and buckets follow: the site's, or UTC where the kept hourly data cannot follow it. */
    timezone?: string
    /** With a comparison: its mode and range. */
    comparison?: { mode: Comparison; date_range: [string, string] }
  }
}

const MAX_LIMIT = 10_000
const MAX_VALUES = 100
const VALUE_MAX = 2048
const DAY_MS = 86_400_000

const text = (what: string) =>
  v.pipe(
    v.string(`${what} must be a string`),
    v.rawCheck(({ dataset, addIssue }) => {
      const problem = dataset.typed ? textProblem(what, dataset.value) : null
      if (problem) addIssue({ message: problem })
    }),
  )
const dimensionName = v.pipe(
  text('a dimension'),
  v.check(
    isDimension,
    (i) =>
      `unknown dimension ${JSON.stringify(i.input)}: use one of ${DIMENSIONS.join(', ')}, entry_page, exit_page, ${VISIT_PREFIX}<${ACQUISITION.join('|')}>, ${PROPS_PREFIX}<key>, or (in dimensions) time:${GRANULARITIES.join('|')}`,
  ),
)

export const QuerySchema = v.strictObject(
  {
    site_id: v.pipe(v.string('site_id must be a string'), v.regex(SITE_ID_PATTERN, 'site_id must be 1-128 characters of A-Z a-z 0-9 . _ : -')),
    date_range: v.union(
      [
        v.picklist(DATE_RANGES),
        v.pipe(
          v.tuple([v.string(), v.string()]),
          v.check(([a, b]) => isDate(a) && isDate(b), 'date_range dates must be real calendar dates from 1970 on, written YYYY-MM-DD'),
          v.check(([a, b]) => a <= b, 'date_range must not end before it starts'),
        ),
      ],
      `date_range must be one of ${DATE_RANGES.join(', ')}, or ["YYYY-MM-DD", "YYYY-MM-DD"]`,
    ),
    metrics: v.pipe(
      v.array(v.picklist(METRICS, `metrics must be among ${METRICS.join(', ')}`), 'metrics must be an array'),
      v.minLength(1, 'metrics must name at least one metric'),
      v.check((m) => new Set(m).size === m.length, 'metrics must not repeat'),
    ),
    dimensions: v.optional(
      v.pipe(
        v.array(
          v.union([v.pipe(v.string(), v.regex(/^time:(hour|day|month|year)$/)), dimensionName], 'dimensions must be dimension names'),
          'dimensions must be an array',
        ),
        v.check((d) => d.filter((x) => x.startsWith('time:')).length <= 1, 'dimensions may hold one time:<granularity>'),
        v.check((d) => d.filter((x) => !x.startsWith('time:')).length <= 1, 'dimensions may hold one dimension besides time'),
      ),
      [],
    ),
    filters: v.optional(
      v.pipe(
        v.array(
          v.tuple(
            [
              v.picklist(OPERATORS, `a filter's operator must be one of ${OPERATORS.join(', ')}`),
              dimensionName,
              v.pipe(
                v.array(v.pipe(text('a filter value'), v.maxLength(VALUE_MAX, `filter values must be at most ${VALUE_MAX} characters`))),
                v.minLength(1, 'a filter needs at least one value'),
                v.maxLength(MAX_VALUES, `a filter takes at most ${MAX_VALUES} values`),
              ),
            ],
            'a filter is [operator, dimension, [values]]',
          ),
          'filters must be an array',
        ),
        v.maxLength(10, 'at most 10 filters'),
      ),
      [],
    ),
    order_by: v.optional(
      v.array(
        v.tuple([v.string(), v.picklist(['asc', 'desc'], 'order direction must be asc or desc')], 'order_by items are [metric or dimension, "asc"|"desc"]'),
      ),
    ),
    include: v.optional(
      v.strictObject(
        {
          comparisons: v.optional(
            v.strictObject(
              { mode: v.picklist(COMPARISONS, `include.comparisons.mode must be one of ${COMPARISONS.join(', ')}`) },
              'comparisons is {"mode": ...}',
            ),
          ),
        },
        'include may hold comparisons',
      ),
    ),
    limit: v.optional(
      v.pipe(
        v.number('limit must be a number'),
        v.integer('limit must be a whole number'),
        v.minValue(1, `limit must be from 1 to ${MAX_LIMIT}`),
        v.maxValue(MAX_LIMIT, `limit must be from 1 to ${MAX_LIMIT}`),
      ),
      1000,
    ),
  },
  (i) =>
    `unknown field ${JSON.stringify(i.received?.replace(/^"|"$/g, '') ?? '')} (fields: site_id, date_range, metrics, dimensions, filters, order_by, include, limit)`,
)

export type Problem = { field: string; message: string }

export type ParseOptions = { now?: Date /** The site's time zone; UTC when not given. */; timezone?: string }

/** Checks a request body and resolves its date range against `now` in the site's time zone; returns the query or every problem. */
export function parseQuery(body: unknown, nowOrOptions: Date | ParseOptions = {}): { ok: true; query: Query } | { ok: false; problems: Problem[] } {
  const { now = new Date(), timezone = 'UTC' } = nowOrOptions instanceof Date ? { now: nowOrOptions } : nowOrOptions
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return { ok: false, problems: [{ field: 'query', message: 'body must be a JSON object' }] }
  const parsed = v.safeParse(QuerySchema, body)
  if (!parsed.success) return { ok: false, problems: parsed.issues.map((i) => ({ field: v.getDotPath(i) ?? 'query', message: i.message })) }
  const q = parsed.output
  const problems: Problem[] = []
  const today = localDate(now.getTime(), timezone)
  const dates = presetDates(q.date_range, today)
  const [from, to] = dates ? datesToRange(dates, timezone) : [null, null]
  const comparison = q.include?.comparisons?.mode ?? null
  if (comparison && !dates) problems.push({ field: 'include.comparisons', message: 'a comparison needs a date range other than "all"' })
  const comparedDates = comparison && dates ? comparisonDates(dates, comparison, today) : null
  if (comparedDates && comparedDates[0] < FIRST_DATE) {
    problems.push({ field: 'include.comparisons', message: `the comparison period would start before ${FIRST_DATE}; choose a later range` })
  }
  const timeName = q.dimensions.find((d) => d.startsWith('time:'))
  const time = timeName ? (timeName.slice(5) as Granularity) : null
  const dimension = (q.dimensions.find((d) => !d.startsWith('time:')) as Dimension | undefined) ?? null
  if (time && from && to && countBuckets(from, to, time) > MAX_SERIES_BUCKETS) {
    problems.push({ field: 'dimensions', message: `the range holds more than ${MAX_SERIES_BUCKETS} buckets of ${time}; choose a coarser one` })
  }
  const orderBy: Query['orderBy'] = []
  for (const [i, [key, dir]] of (q.order_by ?? []).entries()) {
    const k =
      (METRICS as readonly string[]).includes(key) && q.metrics.includes(key as Metric)
        ? key
        : key === dimension
          ? 'dimension'
          : key === timeName
            ? 'time'
            : null
    if (k === null) problems.push({ field: `order_by.${i}`, message: `order_by must name a metric or dimension of this query, not ${JSON.stringify(key)}` })
    else orderBy.push({ key: k as Query['orderBy'][number]['key'], desc: dir === 'desc' })
  }
  const realtime = q.date_range === 'realtime'
  const visitOnly = [dimension, ...q.filters.map(([, dim]) => dim)].some((d) => d !== null && isVisitOnly(d))
  if (realtime && (time || visitOnly || q.metrics.some((m) => VISIT_METRICS.includes(m) || m === 'conversion_rate'))) {
    problems.push({
      field: 'date_range',
      message: `realtime answers visitors, pageviews and events, without time dimensions, entry_page, exit_page or ${VISIT_PREFIX}*`,
    })
  }
  for (const [i, [op, , values]] of q.filters.entries()) {
    if ((op === 'contains' || op === 'matches') && values.includes(NONE)) {
      problems.push({ field: `filters.${i}`, message: `${NONE} stands for an absent value, which nothing contains: filter it with "is" or "is_not"` })
    }
  }
  const goal = q.filters.some(([, dim]) => dim === 'event_type' || dim === 'path') || dimension === 'event_type'
  if (q.metrics.includes('conversion_rate') && !goal) {
    problems.push({
      field: 'metrics',
      message: 'conversion_rate needs a goal: a filter on event_type or path (such as ["is", "event_type", ["signup"]]), or a breakdown by event_type',
    })
  }
  if (problems.length) return { ok: false, problems }
  // By default a series reads in time order, a breakdown by its first metric, largest first.
  if (orderBy.length === 0) {
    if (time) orderBy.push({ key: 'time', desc: false })
    if (dimension) orderBy.push({ key: q.metrics[0]!, desc: true }, { key: 'dimension', desc: false })
  }
  return {
    ok: true,
    query: {
      siteId: q.site_id,
      from,
      to,
      metrics: q.metrics,
      dimension,
      time,
      order: q.dimensions.map((d) => (d.startsWith('time:') ? 'time' : 'dimension')),
      filters: q.filters.map(([op, dim, values]) => ({ op, dim: dim as Dimension, values: values.map((x) => (x === NONE ? '' : x)) })),
      orderBy,
      limit: q.limit,
      realtime,
      timezone,
      dates,
      comparison,
      comparedDates,
    },
  }
}

/** UTC day ranges: "7d" and "30d" end with today, "month", "12mo" and "year" are calendar periods holding today. */
export function resolveRange(range: (typeof DATE_RANGES)[number] | [string, string], now: Date): [Date | null, Date | null] {
  const today = truncate(now, 'day')
  const day = (n: number) => new Date(today.getTime() + n * DAY_MS)
  if (Array.isArray(range)) return [new Date(`${range[0]}T00:00:00Z`), new Date(Date.parse(`${range[1]}T00:00:00Z`) + DAY_MS)]
  switch (range) {
    case 'realtime':
      return [new Date(now.getTime() - REALTIME_MS), new Date(now.getTime() + 1)]
    case 'day':
      return [today, day(1)]
    case '7d':
      return [day(-6), day(1)]
    case '30d':
      return [day(-29), day(1)]
    case 'month':
      return [truncate(now, 'month'), add(truncate(now, 'month'), 'month')]
    case '12mo':
      return [add(truncate(now, 'month'), 'month', -11), add(truncate(now, 'month'), 'month')]
    case 'year':
      return [truncate(now, 'year'), add(truncate(now, 'year'), 'year')]
    case 'all':
      return [null, null]
  }
}

/** The first date a range (or the period it is compared with) may start on. */
const FIRST_DATE = '1970-01-01'

/** A calendar date whose next day is still a valid date (Postgres and ISO 8601 end in 9999). */
const isDate = (s: string) => isCalendarDate(s) && s < '9999-01-01'
