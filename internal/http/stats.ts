import { Hono } from 'hono'
import * as v from 'valibot'
import { LIMITS, SITE_ID_PATTERN, textProblem } from '../event/event.ts'
import { isCalendarDate, parseTimestamp } from '../event/timestamp.ts'
import { add, countBuckets, GRANULARITIES, MAX_SERIES_BUCKETS, truncate } from '../store/buckets.ts'
import { hourlyKeptSince } from '../store/retention.ts'
import type { RangeQuery } from '../store/stats.ts'
import { HourlyDetailExpiredError, type Store } from '../store/store.ts'
import type { Auth } from './auth.ts'
import { ApiError } from './errors.ts'
import { routeDocs } from './openapi.ts'

const StatsQuerySchema = v.object({
  site_id: v.pipe(v.string('site_id is required'), v.regex(SITE_ID_PATTERN, 'site_id must be 1-128 characters of A-Z a-z 0-9 . _ : -')),
  // The day's end must be a date Postgres takes, so the last day is 9999-12-30.
  date: v.optional(
    v.pipe(
      v.string(),
      v.check((s) => isCalendarDate(s) && s < '9999-12-31', 'date must be a real calendar date from 1970-01-01 to 9999-12-30, written YYYY-MM-DD'),
    ),
  ),
  event_type: v.optional(
    v.pipe(
      v.string(),
      v.minLength(1, 'event_type must not be empty'),
      v.maxLength(LIMITS.event_type, `event_type must be at most ${LIMITS.event_type} characters`),
    ),
  ),
  limit: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d{1,3}$/, 'limit must be a whole number from 1 to 100'),
      v.transform(Number),
      v.minValue(1, 'limit must be a whole number from 1 to 100'),
      v.maxValue(100, 'limit must be a whole number from 1 to 100'),
    ),
    '10',
  ),
})

/** A date (YYYY-MM-DD, midnight UTC) or an ISO 8601 timestamp with a timezone on a UTC hour boundary. */
const instant = (field: string) =>
  v.pipe(
    v.string(),
    v.rawTransform<string, Date>(({ dataset, addIssue, NEVER }) => {
      const s = dataset.value
      const ms = isCalendarDate(s) ? Date.parse(`${s}T00:00:00Z`) : parseTimestampMs(s)
      if (ms === null || ms >= END_OF_9999) {
        addIssue({ message: `${field} must be a date (YYYY-MM-DD) or an ISO 8601 timestamp with a timezone` })
        return NEVER
      }
      if (ms % 3_600_000 !== 0) {
        addIssue({ message: `${field} must fall on a whole UTC hour: rollups count by the hour` })
        return NEVER
      }
      return new Date(ms)
    }),
  )

const RangeQueryObject = v.object({
  site_id: StatsQuerySchema.entries.site_id,
  from: instant('from'),
  to: v.optional(instant('to')),
  granularity: v.optional(v.picklist(GRANULARITIES, `granularity must be one of ${GRANULARITIES.join(', ')}`), 'day'),
  event_type: StatsQuerySchema.entries.event_type,
  limit: StatsQuerySchema.entries.limit,
})

/**
 * The range query; without `to`, the range ends after the last hour an accepted event can
 * be in (now plus INGEST_MAX_FUTURE_MS, rounded up to the hour), so what a client just sent
 * is counted.
 */
const rangeQuerySchema = (maxFutureMs: number) =>
  v.pipe(
    RangeQueryObject,
    v.transform((q) => ({ ...q, to: q.to ?? add(truncate(new Date(Date.now() + maxFutureMs), 'hour'), 'hour') })),
    v.forward(
      v.check((q) => q.from < q.to, 'to must be after from'),
      ['to'],
    ),
    v.forward(
      v.check(
        (q) => countBuckets(q.from, q.to, q.granularity) <= MAX_SERIES_BUCKETS,
        `the range holds more than ${MAX_SERIES_BUCKETS} buckets of that granularity; choose a coarser one`,
      ),
      ['granularity'],
    ),
  )

/** Parses query parameters; every value, known or not, must first pass the event package's text rule. */
function query<T extends v.GenericSchema>(schema: T, input: Record<string, string>): v.InferOutput<T> {
  const textProblems = Object.entries(input).flatMap(([name, value]) => {
    const badName = textProblem('a parameter name', name)
    if (badName) return [{ field: 'query', message: badName }]
    const badValue = textProblem(name, value)
    return badValue ? [{ field: name, message: badValue }] : []
  })
  if (textProblems.length) throw new ApiError(400, 'invalid_query', 'query is invalid', { details: textProblems })
  const parsed = v.safeParse(schema, input)
  if (!parsed.success) {
    const details = parsed.issues.map((i) => ({ field: v.getDotPath(i) ?? 'query', message: i.message }))
    throw new ApiError(400, 'invalid_query', 'query is invalid', { details })
  }
  return parsed.output
}

export type StatsRoutesOptions = {
  /** INGEST_MAX_FUTURE_MS: how far ahead an accepted event's timestamp can be. */
  maxFutureMs?: number
  /** ROLLUP_HOUR_RETENTION_DAYS; 0 keeps hourly rollups forever. */
  hourRollupDays?: number
  /** Who may read which site; without it every caller may read every site. */
  auth?: Auth | null
}

/**
 * GET /stats?site_id=&date=YYYY-MM-DD[&event_type=][&limit=]: one UTC day, or all time without date.
 * GET /v1/stats?site_id=&from=&to=&granularity=&event_type=&limit=: totals, a series and top paths for any range.
 * A range that needs hourly rollups past their retention is a 422 hourly_detail_expired.
 */
export function statsRoutes(store: Store, { maxFutureMs = 5 * 60_000, hourRollupDays = 0, auth = null }: StatsRoutesOptions = {}) {
  const RangeQuerySchema = rangeQuerySchema(maxFutureMs)
  const stats = (q: Omit<RangeQuery, 'hourlyFrom'>) =>
    store.stats({ ...q, hourlyFrom: hourlyKeptSince(hourRollupDays) }).catch((err: unknown) => {
      if (err instanceof HourlyDetailExpiredError) throw new ApiError(422, err.code, err.message)
      throw err
    })
  return new Hono()
    .get('/v1/stats', routeDocs.rangeStats(RangeQueryObject), async (c) => {
      const q = query(RangeQuerySchema, c.req.query())
      auth?.read(c, q.site_id)
      const s = await stats({ siteId: q.site_id, from: q.from, to: q.to, granularity: q.granularity, eventType: q.event_type ?? null, limit: q.limit })
      return c.json({
        site_id: q.site_id,
        from: q.from.toISOString(),
        to: q.to.toISOString(),
        granularity: q.granularity,
        event_type: q.event_type ?? null,
        totals: { views: s.total_views, unique_users: s.unique_users },
        series: s.series,
        top_paths: s.top_paths,
        top_paths_max_error: s.top_paths_max_error,
      })
    })
    .get('/stats', routeDocs.stats(StatsQuerySchema), async (c) => {
      const q = query(StatsQuerySchema, c.req.query())
      auth?.read(c, q.site_id)
      const from = q.date ? new Date(`${q.date}T00:00:00Z`) : null
      const to = from ? new Date(from.getTime() + 86_400_000) : null
      const s = await stats({ siteId: q.site_id, from, to, granularity: null, eventType: q.event_type ?? null, limit: q.limit })
      return c.json({
        site_id: q.site_id,
        date: q.date ?? null,
        event_type: q.event_type ?? null,
        total_views: s.total_views,
        unique_users: s.unique_users,
        top_paths: s.top_paths,
      })
    })
}

function parseTimestampMs(s: string): number | null {
  const r = parseTimestamp(s)
  return r.ok ? r.ms : null
}

/** Postgres and ISO 8601 agree on years 1 to 9999; events start in 1970. */
const END_OF_9999 = Date.UTC(10_000, 0, 1)
