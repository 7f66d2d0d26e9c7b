import type postgres from 'postgres'
import type { Sql } from '../clients/clients.ts'
import { GRANULARITIES, HLL, type Granularity } from './rollup.ts'

export type RangeQuery = {
  siteId: string
  /** Inclusive start and exclusive end, on UTC hour boundaries; both null means all time. */
  from: Date | null
  to: Date | null
  /** Size of the time-series buckets; null for totals and top paths only. */
  granularity: Granularity | null
  eventType?: string | null
  limit?: number
}

export type RangeStats = {
  total_views: number
  unique_users: number
  series: { bucket: string; views: number; unique_users: number }[]
  top_paths: { path: string; views: number }[]
  /** Views of paths trimmed from the rollups: any path's true count is at most this much above what top_paths shows. */
  top_paths_max_error: number
}

type Segments = Record<Granularity, string[]>
type Fragment = postgres.PendingQuery<postgres.Row[]>

/**
 * Stats for any range, read in one snapshot: the rollups hold every event below the
 * watermark, raw rows at or above it are counted directly, so nothing is counted twice.
 * The range is covered by the coarsest aligned buckets (years, then months, days, hours).
 */
export async function rangeStats(sql: Sql, { siteId, from, to, granularity, eventType = null, limit = 10 }: RangeQuery): Promise<RangeStats> {
  const allTime = from === null || to === null
  const segments = allTime ? null : plan(from, to, granularity)
  const { log2m, regwidth, expthresh, sparseon } = HLL
  const seriesUnit = granularity ?? 'year'

  return sql.begin('isolation level repeatable read read only', async (tx) => {
    const type = eventType ? tx`and event_type = ${eventType}` : tx``
    const rawRange = allTime ? tx`` : tx`and ts >= ${from} and ts < ${to}`
    const [{ watermark }] = (await tx`select xid_watermark::text as watermark from rollup_state`) as unknown as [{ watermark: string }]
    const rolled = (g: Granularity, columns: Fragment): Fragment => {
      const buckets = segments ? tx`and bucket = any(${segments[g]}::timestamptz[])` : tx``
      return tx`select ${columns} from ${tx(`rollup_${g}`)} where site_id = ${siteId} ${buckets} ${type}`
    }
    const levels: Granularity[] = segments ? GRANULARITIES.filter((g) => segments[g].length > 0) : ['year']
    const unionAll = (parts: Fragment[]) => parts.reduce((acc, p) => tx`${acc} union all ${p}`)

    const counts = unionAll([
      ...levels.map((g) => rolled(g, tx`date_trunc(${seriesUnit}, bucket, 'UTC') as b, views, users, other_path_views`)),
      tx`select date_trunc(${seriesUnit}, ts, 'UTC') as b, count(*)::bigint, hll_add_agg(hll_hash_text(user_id), ${log2m}, ${regwidth}, ${expthresh}, ${sparseon}), 0::bigint
         from events where site_id = ${siteId} and xid >= ${watermark}::xid8 ${rawRange} ${type} group by 1`,
    ])
    const rows = await tx`
      select b, grouping(b) as total, coalesce(sum(views), 0)::float8 as views,
             coalesce(hll_cardinality(hll_union_agg(users)), 0)::float8 as users,
             coalesce(sum(other_path_views), 0)::float8 as other
      from (${counts}) as c(b, views, users, other_path_views)
      group by grouping sets ((b), ()) order by b`

    const pathParts = [
      ...levels.map((g) => {
        const buckets = segments ? tx`and bucket = any(${segments[g]}::timestamptz[])` : tx``
        return tx`select path, views from ${tx(`rollup_${g}_paths`)} where site_id = ${siteId} ${buckets} ${type}`
      }),
      tx`select path, count(*)::bigint from events where site_id = ${siteId} and path is not null and xid >= ${watermark}::xid8 ${rawRange} ${type} group by 1`,
    ]
    const paths = await tx`
      select path, sum(views)::float8 as views from (${unionAll(pathParts)}) as p(path, views)
      group by path order by views desc, path limit ${limit}`

    const total = rows.find((r) => r.total === 1)
    return {
      total_views: total?.views ?? 0,
      unique_users: Math.round(total?.users ?? 0),
      series: granularity ? fill(rows.filter((r) => r.total === 0) as unknown as SeriesRow[], from, to, granularity) : [],
      top_paths: paths.map((p) => ({ path: p.path as string, views: p.views as number })),
      top_paths_max_error: total?.other ?? 0,
    }
  })
}

/** The most buckets one answer's series may hold. */
export const MAX_SERIES_BUCKETS = 10_000

/**
 * Splits [from, to) into series buckets of `granularity`, and each of those into the fewest
 * aligned rollup buckets: a full year from rollup_year, a full month from rollup_month, and
 * so on down to hours. Both ends must be on hour boundaries.
 */
export function plan(from: Date, to: Date, granularity: Granularity | null): Segments {
  const segments: Segments = { hour: [], day: [], month: [], year: [] }
  const top = granularity ?? 'year'
  const levels = GRANULARITIES.slice(0, GRANULARITIES.indexOf(top) + 1).reverse()
  let t = from
  while (t < to) {
    const level = levels.find((g) => truncate(t, g).getTime() === t.getTime() && add(t, g) <= to) ?? 'hour'
    segments[level].push(t.toISOString())
    t = add(t, level)
  }
  return segments
}

export function truncate(d: Date, g: Granularity): Date {
  const y = d.getUTCFullYear()
  const m = d.getUTCMonth()
  switch (g) {
    case 'year': return new Date(Date.UTC(y, 0, 1))
    case 'month': return new Date(Date.UTC(y, m, 1))
    case 'day': return new Date(Date.UTC(y, m, d.getUTCDate()))
    case 'hour': return new Date(Date.UTC(y, m, d.getUTCDate(), d.getUTCHours()))
  }
}

export function add(d: Date, g: Granularity, n = 1): Date {
  const r = new Date(d)
  if (g === 'year') r.setUTCFullYear(r.getUTCFullYear() + n)
  else if (g === 'month') r.setUTCMonth(r.getUTCMonth() + n)
  else if (g === 'day') r.setUTCDate(r.getUTCDate() + n)
  else r.setUTCHours(r.getUTCHours() + n)
  return r
}

/** Every bucket of the range in order, zeros where nothing happened. */
type SeriesRow = { b: Date; views: number; users: number }

function fill(rows: SeriesRow[], from: Date | null, to: Date | null, g: Granularity): RangeStats['series'] {
  const byBucket = new Map(rows.map((r) => [r.b.getTime(), r]))
  if (!from || !to) return rows.map((r) => ({ bucket: r.b.toISOString(), views: r.views, unique_users: Math.round(r.users) }))
  const out: RangeStats['series'] = []
  for (let b = truncate(from, g); b < to; b = add(b, g)) {
    const r = byBucket.get(b.getTime())
    out.push({ bucket: b.toISOString(), views: r?.views ?? 0, unique_users: Math.round(r?.users ?? 0) })
  }
  return out
}
