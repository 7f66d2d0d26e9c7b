import { isVisitOnly } from '../store/dimensions.ts'
import type { Dates } from './dates.ts'
import { datesToRange } from './dates.ts'
import { type Query, VISIT_METRICS } from './query.ts'

export type Source = 'totals' | 'dims' | 'raw' | 'visits'
/** How a query is answered in time: in its site's zone (from hourly data), or in UTC days. */
export type Zoned = { query: Query; source: Source; local: boolean }

const UTC_NAMES = new Set([
  'UTC',
  'Etc/UTC',
  'Etc/UCT',
  'UCT',
  'Etc/GMT',
  'GMT',
  'Etc/Universal',
  'Universal',
  'Etc/Zulu',
  'Zulu',
  'Etc/Greenwich',
  'Greenwich',
  'Etc/GMT0',
  'GMT0',
  'Etc/GMT+0',
  'GMT+0',
  'Etc/GMT-0',
  'GMT-0',
])

/**
 * Decides whether a query can follow its site's time zone with the data kept. Local days
 * (and months, years) are unions of UTC hours, so they need hourly detail: the hourly
 * rollups for totals (ROLLUP_HOUR_RETENTION_DAYS), raw events for anything with a
 * dimension (there are no hourly dimension rollups; RAW_RETENTION_HOURS). A range that
 * reaches further back is answered in UTC days instead, and the answer says so
 * (meta.timezone). "all" with a time breakdown is always in UTC; without one the zone
 * changes nothing. Visit metrics (and entry and exit pages) are counted in UTC buckets only,
 * so a query with them is in UTC days.
 */
export function inZone(q: Query, source: Source, { hourlyFrom, rawSince }: { hourlyFrom: Date | null; rawSince: Date | null }): Zoned {
  if (UTC_NAMES.has(q.timezone)) return { query: { ...q, timezone: 'UTC' }, source, local: false }
  if (q.realtime) return { query: q, source, local: false }
  if (!q.dates || !q.from) return q.time ? { query: inUtc(q, null), source, local: false } : { query: q, source, local: false }
  if (source === 'visits') return { query: inUtc(q, q.dates), source, local: false }
  if (source === 'totals') {
    if (!hourlyFrom || q.from >= hourlyFrom) return { query: q, source, local: true }
  } else if (!rawSince || q.from >= rawSince) {
    return { query: q, source: 'raw', local: true }
  }
  return { query: inUtc(q, q.dates), source, local: false }
}

/** Where a query's figures would come from, as far as the zone is concerned: visits are counted in UTC buckets only. */
export function zoneSource(q: Query): Source {
  const involved = new Set<string>(q.filters.map((f) => f.dim))
  if (q.dimension) involved.add(q.dimension)
  if ([...involved].some(isVisitOnly) || q.metrics.some((m) => VISIT_METRICS.includes(m))) return 'visits'
  return [...involved].every((d) => d === 'event_type') ? 'totals' : 'dims'
}

function inUtc(q: Query, dates: Dates | null): Query {
  const [from, to] = dates ? datesToRange(dates, 'UTC') : [q.from, q.to]
  return { ...q, timezone: 'UTC', from, to }
}
