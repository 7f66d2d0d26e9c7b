// Package visits turns raw events into visits inside the rollup job: each event is merged,
// exactly once, into its visitor's open visit; visits nothing has arrived for in a while are
// closed and counted into rollup_<g>_visits. docs/visits.md gives the rules.
import type postgres from 'postgres'
import type { Sql } from '../clients/clients.ts'
import { ACQUISITION, ATTRIBUTES, PAGEVIEW_TYPES } from '../store/dimensions.ts'
import { addCounts, foldBeyondCap } from '../store/cap.ts'
import { HLL } from '../store/rollup.ts'

/** A new visit starts after a gap of this much event time, or more. */
export const VISIT_GAP_MS = 30 * 60_000

/**
 * The dimensions visits are counted by: the ATTRIBUTES a visit takes from its first event,
 * the entry and exit pages, and path and event_type, under which a visit counts once for
 * each value its events had.
 */
export const VISIT_DIMENSIONS = [...ATTRIBUTES, 'entry_page', 'exit_page', 'path', 'event_type'] as const
export type VisitDimension = (typeof VISIT_DIMENSIONS)[number]
export const isVisitDimension = (d: string): d is VisitDimension => (VISIT_DIMENSIONS as readonly string[]).includes(d)

type Rows = postgres.PendingQuery<postgres.Row[]>

/**
 * Merges the raw events `rows` selects into visits_open. Each event, and each open visit of
 * the same visitors, is an interval of event time; intervals closer than VISIT_GAP_MS join
 * one visit, so a late event can extend a visit at either end, or join two. Events without a
 * visitor (user_id) belong to no visit. Runs in the rollup's transaction, so a crash undoes
 * it together with the watermark.
 */
export async function mergeVisits(tx: Sql, rows: Rows): Promise<void> {
  const pv = PAGEVIEW_TYPES as unknown as string[]
  // A list of identifiers as a fragment: postgres.js reads tx(array) in an insert as values.
  const attrs = ATTRIBUTES.map((a) => tx`${tx(a)}`).reduce((a, b) => tx`${a}, ${b}`)
  await tx`
    create temp table visit_items on commit drop as
    select site_id collate "C" as site_id, user_id collate "C" as visitor, ts as started_at, ts as ended_at, received_at as last_received_at, 1::bigint as events,
           (event_type = any(${pv}))::int::bigint as pageviews,
           case when event_type = any(${pv}) and path is not null then ts end as entry_at,
           case when event_type = any(${pv}) then path end collate "C" as entry_page,
           case when event_type = any(${pv}) and path is not null then ts end as exit_at,
           case when event_type = any(${pv}) then path end collate "C" as exit_page,
           event_id as first_event_id, ${attrs},
           case when event_type = any(${pv}) and path is not null then array[path] else '{}'::text[] end as paths,
           array[event_type] as event_types
    from events where ${rows} and user_id is not null`
  const [{ n }] = (await tx`select count(*)::int as n from visit_items`) as unknown as [{ n: number }]
  if (n === 0) {
    await tx`drop table visit_items`
    return
  }
  // The open visits of these visitors join the new events, and leave visits_open until merged.
  await tx`
    with touched as (select distinct site_id, visitor from visit_items),
    taken as (
      delete from visits_open o using touched t where o.site_id = t.site_id and o.visitor = t.visitor
      returning o.*
    )
    insert into visit_items
    select site_id, visitor, started_at, ended_at, last_received_at, events, pageviews, entry_at, entry_page, exit_at, exit_page,
           first_event_id, ${attrs}, paths, event_types
    from taken`
  // Number each visitor's visits in one ordered pass by (start, event id): an item that
  // starts VISIT_GAP_MS or more after every earlier one ended opens the next, and is that
  // visit's first, whose attributes the visit takes. Then each visit is gathered by hashing,
  // so the items are sorted once. The entry and exit pages are the least and greatest of an
  // array led by a fixed-width time key (earliest page view, then smallest path in byte order,
  // whatever the database's collation; latest, then largest).
  const key = (t: string) => tx`lpad((extract(epoch from ${tx(t)}) * 1000000)::bigint::text, 18, '0')`
  const firsts = ATTRIBUTES.map((a) => tx`max(${tx(a)}) filter (where opens = 1) as ${tx(a)}`).reduce((a, b) => tx`${a}, ${b}`)
  await tx`
    insert into visits_open (site_id, visitor, started_at, ended_at, last_received_at, events, pageviews, entry_at, entry_page, exit_at, exit_page,
                             first_event_id, ${attrs}, paths, event_types)
    select site_id, visitor, started_at, ended_at, last_received_at, events, pageviews, entry_at, e[2], exit_at, x[2], first_event_id::uuid, ${attrs},
           array(select distinct unnest(paths) order by 1), array(select distinct unnest(event_types) order by 1)
    from (
      select site_id, visitor, min(started_at) as started_at, max(ended_at) as ended_at, max(last_received_at) as last_received_at,
             sum(events)::bigint as events, sum(pageviews)::bigint as pageviews,
             min(entry_at) as entry_at, min(array[${key('entry_at')}, entry_page]) filter (where entry_at is not null) as e,
             max(exit_at) as exit_at, max(array[${key('exit_at')}, exit_page]) filter (where exit_at is not null) as x,
             max(first_event_id::text) filter (where opens = 1) as first_event_id, ${firsts}, sluice_array_cat_agg(paths) as paths, sluice_array_cat_agg(event_types) as event_types
      from (
        select *, sum(opens) over (w rows unbounded preceding) as n
        from (
          select *, case when started_at - max(ended_at) over (w rows between unbounded preceding and 1 preceding)
                           < ${`${VISIT_GAP_MS} milliseconds`}::interval then 0 else 1 end as opens
          from visit_items window w as (partition by site_id, visitor order by started_at, first_event_id)
        ) o window w as (partition by site_id, visitor order by started_at, first_event_id)
      ) s
      group by site_id, visitor, n
    ) v`
  await tx`drop table visit_items`
}

export type CloseOptions = {
  /** Visits with no event received since this instant are closed. */
  before: Date
  /** Most values kept per site, bucket and dimension; the rest fold into rollup_<g>_visit_other. */
  dimCap: number
  /** Only visits of these sites (a condition on site_id): the rollup's shard. */
  sites?: Rows
}

/**
 * Closes the open visits nothing has arrived for since `before`, counting each into the
 * hour (totals only), day, month and year visit rollups by the bucket of its start. Returns
 * how many it closed.
 */
export async function closeVisits(tx: Sql, { before, dimCap, sites = tx`true` }: CloseOptions): Promise<number> {
  // A missing value is counted as '' (what a rollup row stores for it): taken as '' here, before
  // any grouping, so that '' and null (a hand-written row may hold either) group as one value.
  await tx`
    create temp table visit_closed on commit drop as
    with gone as (delete from visits_open where last_received_at < ${before} and ${sites} returning *)
    select site_id collate "C" as site_id, visitor, started_at, ended_at, events, pageviews,
           coalesce(entry_page, '') collate "C" as entry_page, coalesce(exit_page, '') collate "C" as exit_page,
           ${ATTRIBUTES.map((a) => tx`coalesce(${tx(a)}, '') collate "C" as ${tx(a)}`).reduce((a, b) => tx`${a}, ${b}`)},
           paths::text[] collate "C" as paths, event_types::text[] collate "C" as event_types, date_trunc('day', started_at, 'UTC') as day
    from gone`
  const [{ n }] = (await tx`select count(*)::int as n from visit_closed`) as unknown as [{ n: number }]
  if (n > 0) {
    // Each visit is counted once per day, by grouping sets (one sort per dimension, far
    // cheaper than unpivoting every visit into a row per dimension); hours, months and years
    // are sums of those rows (hours of the totals only). Visitor sketches only where they are
    // read: the totals, entry and exit pages, and how visits came (visit:source and the like).
    await tx`
      create temp table visit_closed_days on commit drop as
      ${groupedVisits(tx, ['entry_page', 'exit_page', ...ACQUISITION], true)}
      union all ${groupedVisits(
        tx,
        ATTRIBUTES.filter((a) => !(ACQUISITION as readonly string[]).includes(a)),
        false,
      )}
      union all
      select v.site_id, v.day, 'path', p, ${visitMeasures(tx, tx`false`)} from visit_closed v cross join lateral unnest(v.paths) p group by 1, 2, 3, 4
      union all
      select v.site_id, v.day, 'event_type', t, ${visitMeasures(tx, tx`false`)} from visit_closed v cross join lateral unnest(v.event_types) t group by 1, 2, 3, 4`
    await tx`
      insert into rollup_hour_visits as r (site_id, bucket, dim, value, visits, bounces, duration_ms, pageviews, events, users)
      select v.site_id, date_trunc('hour', v.started_at, 'UTC'), '', '', ${visitMeasures(tx)}
      from visit_closed v group by 1, 2
      on conflict (site_id, dim, bucket, value) do update set ${addCounts(tx, VISIT_SUMS)}`
    // visit_closed_days has one row per (site, day, dim, value): the day level takes them as
    // they are, and so do month and year when every visit started on one day.
    const [{ days }] = (await tx`select count(distinct day)::int as days from visit_closed`) as unknown as [{ days: number }]
    for (const g of ['day', 'month', 'year'] as const) {
      const rows =
        g === 'day' || days <= 1
          ? tx`select site_id, date_trunc(${g}, bucket, 'UTC'), dim, value, visits, bounces, duration_ms, pageviews, events, coalesce(users, ${emptySketch(tx)})
               from visit_closed_days`
          : tx`select site_id, date_trunc(${g}, bucket, 'UTC'), dim, value, sum(visits), sum(bounces), sum(duration_ms), sum(pageviews), sum(events),
                      coalesce(sluice_hll_union(users), ${emptySketch(tx)})
               from visit_closed_days group by 1, 2, 3, 4`
      await tx`
        insert into ${tx(`rollup_${g}_visits`)} as r (site_id, bucket, dim, value, visits, bounces, duration_ms, pageviews, events, users) ${rows}
        on conflict (site_id, dim, bucket, value) do update set ${addCounts(tx, VISIT_SUMS)}`
      // Only buckets the closed visits touched can have passed the cap.
      const touched = tx`select distinct site_id, dim, date_trunc(${g}, bucket, 'UTC') as bucket from visit_closed_days where dim <> ''`
      await foldBeyondCap(tx, { table: `rollup_${g}_visits`, other: `rollup_${g}_visit_other`, sums: VISIT_SUMS }, touched, 'visits', dimCap)
    }
    await tx`drop table visit_closed_days`
  }
  await tx`drop table visit_closed`
  return n
}

/**
 * The closed visits counted per (site, day) and per (site, day, column) for each of
 * `columns`, as rows (site_id, bucket, dim, value, measures); with `totals`, also the
 * (site, day) totals, and visitor sketches for every set (else no sketches).
 */
function groupedVisits(tx: Sql, columns: readonly string[], totals: boolean): Rows {
  const list = (parts: Rows[]) => parts.reduce((acc, p) => tx`${acc}, ${p}`)
  const dim = tx`case ${columns.map((c) => tx`when grouping(${tx(c)}) = 0 then ${c}::text`).reduce((acc, p) => tx`${acc} ${p}`)} else '' end`
  const value = tx`coalesce(${list(columns.map((c) => tx`case when grouping(${tx(c)}) = 0 then coalesce(${tx(c)}, '') end`))}, '')`
  const sets = list([...(totals ? [tx`(site_id, day)`] : []), ...columns.map((c) => tx`(site_id, day, ${tx(c)})`)])
  return tx`
    select site_id, day as bucket, ${dim} as dim, ${value} as value, ${visitMeasures(tx, totals ? undefined : tx`false`)}
    from visit_closed v group by grouping sets (${sets})`
}

/** The counted columns of the visit rollups, beside their visitor sketch. */
const VISIT_SUMS = ['visits', 'bounces', 'duration_ms', 'pageviews', 'events']

const emptySketch = (tx: Sql) => {
  const { log2m, regwidth, expthresh, sparseon } = HLL
  return tx`hll_empty(${log2m}, ${regwidth}, ${expthresh}, ${sparseon})`
}

/**
 * The measures of a group of visits `v`: visits, bounces, total duration in ms, page views,
 * events and a sketch of visitors (null where `sketched` is false for every visit).
 */
export function visitMeasures(tx: Sql, sketched?: Rows): Rows {
  const { log2m, regwidth, expthresh, sparseon } = HLL
  return tx`count(*)::bigint as visits, (count(*) filter (where v.pageviews = 1))::bigint as bounces,
            coalesce(sum((extract(epoch from v.ended_at - v.started_at) * 1000)::bigint), 0)::bigint as duration_ms,
            sum(v.pageviews)::bigint as pageviews, sum(v.events)::bigint as events,
            hll_add_agg(hll_hash_text(v.visitor), ${log2m}, ${regwidth}, ${expthresh}, ${sparseon}) ${sketched ? tx`filter (where ${sketched})` : tx``} as users`
}

/** The (dim, value) pairs a closed visit row `v` is counted under, as a lateral subquery. */
export function visitPairs(tx: Sql): Rows {
  const attrs = ATTRIBUTES.map((a) => tx`select ${a}::text, coalesce(v.${tx(a)}, '')`).reduce((a, b) => tx`${a} union all ${b}`)
  return tx`
    select ''::text as dim, ''::text as value
    union all ${attrs}
    union all select 'entry_page', coalesce(v.entry_page, '')
    union all select 'exit_page', coalesce(v.exit_page, '')
    union all select 'path', p from unnest(v.paths) p
    union all select 'event_type', t from unnest(v.event_types) t`
}
