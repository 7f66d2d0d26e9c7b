import type postgres from 'postgres'
import type { Sql } from '../clients/clients.ts'
import { HourlyDetailExpiredError } from './errors.ts'
import { add, GRANULARITIES, truncate, type Granularity } from './buckets.ts'
import { hourlyDetailFrom, keepRawEvents } from './retention.ts'
import { HLL, siteWatermark } from './rollup.ts'

export type RangeQuery = {
  siteId: string
  /** Inclusive start and exclusive end, on UTC hour boundaries; both null means all time. */
  from: Date | null
  to: Date | null
  /** Size of the time-series buckets; null for totals and top paths only. */
  granularity: Granularity | null
  eventType?: string | null
  limit?: number
  /** Hourly rollup buckets before this are gone (retention); a range that needs them is refused. */
  hourlyFrom?: Date | null
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
type SeriesRow = { b: Date; views: number; users: number }

/**
 * Stats for any range, read in one snapshot: the rollups hold every event below the
 * watermark, raw rows at or above it are counted directly, so nothing is counted twice.
 * Totals and top paths read the coarsest aligned buckets (years, then months, days, hours);
 * the series reads buckets no coarser than its granularity.
 */
export async function rangeStats(
  sql: Sql,
  { siteId, from, to, granularity, eventType = null, limit = 10, hourlyFrom = null }: RangeQuery,
): Promise<RangeStats> {
  const bounded = from !== null && to !== null
  const coarse = bounded ? plan(from, to, null) : null
  const fine = bounded && granularity ? plan(from, to, granularity) : null
  const needed = [...(coarse?.hour ?? []), ...(fine?.hour ?? [])]
  const { log2m, regwidth, expthresh, sparseon } = HLL

  return sql.begin('isolation level repeatable read read only', async (tx) => {
    await keepRawEvents(tx as unknown as Sql)
    if (needed.length > 0) {
      // Hourly detail: what ROLLUP_HOUR_RETENTION_DAYS keeps now, and what retention deleted under an earlier setting.
      const [state] = await tx`select hour_dropped_before from rollup_state`
      const kept = hourlyDetailFrom(hourlyFrom, (state?.hour_dropped_before as Date | null) ?? null)
      if (kept && needed.some((b) => new Date(b) < kept)) throw new HourlyDetailExpiredError(kept)
    }
    const type = eventType ? tx`and event_type = ${eventType}` : tx``
    const raw = tx`from events where site_id = ${siteId} and xid >= ${siteWatermark(tx as unknown as Sql, siteId)} ${bounded ? tx`and ts >= ${from} and ts < ${to}` : tx``} ${type}`
    const unionAll = (parts: Fragment[]) => parts.reduce((acc, p) => tx`${acc} union all ${p}`)
    /** One select per rollup level the plan uses (all years when unbounded), plus the raw rows. */
    const sources = (segments: Segments | null, table: (g: Granularity) => string, columns: Fragment, rawSelect: Fragment) =>
      unionAll([
        ...(segments ? GRANULARITIES.filter((g) => segments[g].length > 0) : (['year'] as const)).map(
          (g) =>
            tx`select ${columns} from ${tx(table(g))} where site_id = ${siteId} ${segments ? tx`and bucket = any(${segments[g]}::timestamptz[])` : tx``} ${type}`,
        ),
        rawSelect,
      ])
    const hllOf = tx`hll_add_agg(hll_hash_text(user_id), ${log2m}, ${regwidth}, ${expthresh}, ${sparseon})`

    // Issued together, so postgres.js pipelines them on the transaction's connection.
    const [[totals], paths, rows] = await Promise.all([
      tx`
        select coalesce(sum(views), 0)::float8 as views, coalesce(hll_cardinality(hll_union_agg(users)), 0)::float8 as users,
               coalesce(sum(other), 0)::float8 as other
        from (${sources(coarse, (g) => `rollup_${g}`, tx`views, users, other_path_views`, tx`select count(*)::bigint, ${hllOf}, 0::bigint ${raw}`)}) as c(views, users, other)`,
      tx`
        select path, sum(views)::float8 as views
        from (${sources(coarse, (g) => `rollup_${g}_paths`, tx`path, views`, tx`select path, count(*)::bigint ${raw} and path is not null group by 1`)}) as p(path, views)
        group by path order by views desc, path limit ${limit}`,
      granularity && fine
        ? tx`
          select b, sum(views)::float8 as views, coalesce(hll_cardinality(hll_union_agg(users)), 0)::float8 as users
          from (${sources(fine, (g) => `rollup_${g}`, tx`date_trunc(${granularity}, bucket, 'UTC'), views, users`, tx`select date_trunc(${granularity}, ts, 'UTC'), count(*)::bigint, ${hllOf} ${raw} group by 1`)}) as s(b, views, users)
          group by b order by b`
        : null,
    ])
    const series = granularity && rows ? fill(rows as unknown as SeriesRow[], from!, to!, granularity) : []
    return {
      total_views: totals!.views as number,
      unique_users: Math.round(totals!.users as number),
      series,
      top_paths: paths.map((p) => ({ path: p.path as string, views: p.views as number })),
      top_paths_max_error: totals!.other as number,
    }
  })
}

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

/** Every bucket of the range in order, zeros where nothing happened. */
function fill(rows: SeriesRow[], from: Date, to: Date, g: Granularity): RangeStats['series'] {
  const byBucket = new Map(rows.map((r) => [r.b.getTime(), r]))
  const out: RangeStats['series'] = []
  for (let b = truncate(from, g); b < to; b = add(b, g)) {
    const r = byBucket.get(b.getTime())
    out.push({ bucket: b.toISOString(), views: r?.views ?? 0, unique_users: Math.round(r?.users ?? 0) })
  }
  return out
}
