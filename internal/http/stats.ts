import { Hono } from 'hono'
import * as v from 'valibot'
import { LIMITS, SITE_ID_PATTERN } from '../event/event.ts'
import type { Store } from '../store/store.ts'
import { ApiError } from './errors.ts'

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/

const StatsQuerySchema = v.object({
  site_id: v.pipe(
    v.string('site_id is required'),
    v.regex(SITE_ID_PATTERN, 'site_id must be 1-128 characters of A-Z a-z 0-9 . _ : -'),
  ),
  date: v.optional(v.pipe(v.string(), v.check(isCalendarDate, 'date must be a real calendar date written YYYY-MM-DD'))),
  event_type: v.optional(
    v.pipe(v.string(), v.minLength(1, 'event_type must not be empty'), v.maxLength(LIMITS.event_type, `event_type must be at most ${LIMITS.event_type} characters`)),
  ),
  limit: v.optional(
    v.pipe(v.string(), v.regex(/^\d{1,3}$/, 'limit must be a whole number from 1 to 100'), v.transform(Number), v.minValue(1, 'limit must be a whole number from 1 to 100'), v.maxValue(100, 'limit must be a whole number from 1 to 100')),
    '10',
  ),
})

/** GET /stats?site_id=&date=YYYY-MM-DD[&event_type=][&limit=]: one day in UTC, or all time without date. */
export function statsRoutes(store: Store) {
  return new Hono().get('/stats', async (c) => {
    const parsed = v.safeParse(StatsQuerySchema, c.req.query())
    if (!parsed.success) {
      const details = parsed.issues.map((i) => ({ field: v.getDotPath(i) ?? 'query', message: i.message }))
      throw new ApiError(400, 'invalid_query', 'query is invalid', details)
    }
    const q = parsed.output
    const from = q.date ? new Date(`${q.date}T00:00:00Z`) : null
    const to = from ? new Date(from.getTime() + 86_400_000) : null
    const stats = await store.stats({ siteId: q.site_id, from, to, eventType: q.event_type ?? null, limit: q.limit })
    return c.json({ site_id: q.site_id, date: q.date ?? null, event_type: q.event_type ?? null, ...stats })
  })
}

function isCalendarDate(s: string): boolean {
  const m = DATE.exec(s)
  if (!m) return false
  const d = new Date(`${s}T00:00:00Z`)
  return !Number.isNaN(d.getTime()) && d.getUTCDate() === Number(m[3])
}
