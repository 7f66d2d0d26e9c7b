import type postgres from 'postgres'
import type { Sql } from '../clients/clients.ts'
import { add, GRANULARITIES, type Granularity, truncate } from '../store/buckets.ts'
import {
  ACQUISITION,
  type Dimension,
  dimensionValue,
  isVisitOnly,
  NONE,
  PAGEVIEW_TYPES,
  PAIRS,
  pairOf,
  pairPrefix,
  VISIT_PREFIX,
  visitRollupDim,
} from '../store/dimensions.ts'
import { isVisitDimension, VISIT_DIMENSIONS, visitMeasures, visitPairs } from '../visits/visits.ts'
import { hourlyDetailFrom, keepRawEvents } from '../store/retention.ts'
import { HLL, siteWatermark } from '../store/rollup.ts'
import { plan } from '../store/stats.ts'
import { localDate } from '../sites/timezone.ts'
import { QueryRefusedError } from './errors.ts'
import { type Filter, type Metric, type Query, type QueryResult, REALTIME_MS, VISIT_METRICS } from './query.ts'
import { inZone, zoneSource } from './zone.ts'

type Tx = postgres.TransactionSql
type Fragment = postgres.PendingQuery<postgres.Row[]>

export type RunOptions = {
  /** Hourly rollups before this are gone (ROLLUP_HOUR_RETENTION_DAYS). */
  hourlyFrom?: Date | null
  /** INGEST_MAX_FUTURE_MS: how far an event's timestamp may be ahead of when it was stored. */
  maxFutureMs?: number
  now?: Date
  /**
   * When the request's time is up (epoch ms): the snapshot's statements are cut there
   * (statement_timeout), so that those of one request, together, stay within it.
   */
  deadline?: number
}

type State = {
  watermark: string
  dimsSince: Date | null
  rawDroppedBefore: Date | null
  visitsSince: Date | null
  pairsSince: Date | null
  /** From when visits keep a visitor sketch by how they came (migration 0016). */
  visitSketchesSince: Date | null
}

/**
 * Answers a query in one repeatable-read snapshot, from one of three places:
 * - the totals rollups (rollup_<g>, keyed by event type) when it filters or breaks down by
 *   event_type alone, or by nothing: any range, any granularity;
 * - the dimension rollups (rollup_<g>_dims) when it involves one dimension, in filters and
 *   breakdown together, or two that are kept as a pair (PAIRS: source with country): any
 *   range of whole days, time by day, month or year;
 * - raw events otherwise (two other dimensions, or hours with a dimension): only for ranges
 *   whose raw events are all still kept.
 * The rollups are always read with the raw events above the watermark, so nothing stored is
 * missed and nothing is counted twice.
 */
export async function runQuery(sql: Sql, q: Query, options: RunOptions = {}): Promise<QueryResult> {
  const { maxFutureMs = 5 * 60_000, now = new Date() } = options
  if (q.realtime) q = { ...q, from: new Date(now.getTime() - REALTIME_MS), to: new Date(now.getTime() + maxFutureMs) }
  return sql.begin('isolation level repeatable read read only', async (tx) => {
    if (options.deadline !== undefined) {
      // What is left of the request's time (at least 1 ms: none left cancels the next statement,
      // answered query_timeout). A SET, not a select: the snapshot is taken after the lock below.
      await tx.unsafe(`set local statement_timeout = ${Math.max(1, Math.floor(options.deadline - Date.now()))}`)
    }
    await keepRawEvents(tx as unknown as Sql)
    const [s] =
      await tx`select ${siteWatermark(tx as unknown as Sql, q.siteId)}::text as watermark, dims_since, raw_dropped_before, visits_since, pairs_since, visit_sketches_since, hour_dropped_before from rollup_state`
    const state: State = {
      watermark: s!.watermark,
      dimsSince: s!.dims_since,
      rawDroppedBefore: s!.raw_dropped_before,
      visitsSince: s!.visits_since,
      pairsSince: s!.pairs_since,
      visitSketchesSince: s!.visit_sketches_since,
    }
    // Local days need hourly detail: the query in the site's zone, or in UTC days where that is gone.
    const rawSince = state.rawDroppedBefore ? new Date(state.rawDroppedBefore.getTime() + maxFutureMs) : null
    // Hourly detail: what ROLLUP_HOUR_RETENTION_DAYS keeps now, and what retention deleted under an earlier setting.
    options = { ...options, hourlyFrom: hourlyDetailFrom(options.hourlyFrom ?? null, s!.hour_dropped_before ?? null) }
    const zone = inZone(q, zoneSource(q), { hourlyFrom: options.hourlyFrom ?? null, rawSince })
    q = zone.query
    const answer = await rowsOf(tx, q, state, options, zone.local)
    if (q.metrics.includes('conversion_rate')) answer.trimmed = Math.max(answer.trimmed, await convert(tx, q, state, options, answer, zone.local))
    return {
      results: shape(answer.rows, q),
      meta: {
        site_id: q.siteId,
        date_range: q.from && q.to ? [q.from.toISOString(), q.to.toISOString()] : null,
        source: answer.source === 'raw' ? 'raw_events' : 'rollups',
        trimmed_events: answer.trimmed,
        ...(answer.trimmedVisits === null ? {} : { trimmed_visits: answer.trimmedVisits }),
        timezone: q.timezone,
      },
    }
  })
}

/**
 * Sets each row's conversion rate: its visitors over the visitors of the same query without
 * the goal. The goal is the first filter on event_type (else on path), or else the breakdown
 * by event_type, whose rows each divide by all visitors. A breakdown by the goal's own
 * dimension (goals filtered to one) divides by all visitors too, not by its own rows.
 * Conversions counted from raw events divide by visitors counted from raw events too: a
 * value folded into a capped rollup's remainder would otherwise divide by 0, or by part of
 * its visitors. Returns the events the visitor counts left out (meta.trimmed_events).
 */
async function convert(tx: Tx, q: Query, state: State, options: RunOptions, { rows, source }: Answer, local: boolean): Promise<number> {
  const goal = q.filters.find((f) => f.dim === 'event_type') ?? q.filters.find((f) => f.dim === 'path')
  const byValue = goal !== undefined && q.dimension !== goal.dim
  const withoutGoal = goal ? q.filters.filter((f) => f !== goal) : q.filters
  const base: Query = byValue
    ? { ...q, filters: withoutGoal, metrics: ['visitors'] }
    : { ...q, filters: withoutGoal, dimension: null, order: q.order.filter((o) => o === 'time'), metrics: ['visitors'] }
  const denominator = await rowsOf(tx, base, state, options, local, source === 'raw')
  const all = new Map(denominator.rows.map((r) => [key(r.t, byValue ? r.v : null), r.visitors]))
  for (const r of rows) {
    const total = all.get(key(r.t, byValue ? r.v : null)) ?? 0
    r.conversion_rate = total > 0 ? Math.round((10_000 * Math.round(r.visitors)) / Math.round(total)) / 100 : 0
  }
  return denominator.trimmed
}
const key = (t: Date | null, v: string | null) => `${t?.getTime() ?? ''}|${v ?? ''}`

type Source = 'totals' | 'dims' | 'pair' | 'raw'
/** trimmedVisits: visits of values folded into the visit rollups' remainder, when visits were read. */
type Answer = { rows: Row[]; source: Source | 'visits'; trimmed: number; trimmedVisits: number | null }

/**
 * The rows of a query's event metrics and, when asked, its visit metrics, in one snapshot.
 * `local`: in the site's time zone, from hourly rollups (totals) or raw events (dimensions).
 */
async function rowsOf(
  tx: Tx,
  q: Query,
  state: State,
  { hourlyFrom = null, maxFutureMs = 5 * 60_000, now = new Date() }: RunOptions,
  local = false,
  /** Count from raw events whatever the rollups could answer (conversion rates' denominators). */
  rawOnly = false,
): Promise<Answer> {
  const involved = new Set<Dimension>(q.filters.map((f) => f.dim))
  if (q.dimension) involved.add(q.dimension)
  const range = q.from && q.to ? { from: q.from, to: q.to } : q.time ? await allTime(tx, q.siteId, now, maxFutureMs) : null
  const visitOnly = [...involved].some(isVisitOnly)
  const wantsVisits = visitOnly || q.metrics.some((m) => VISIT_METRICS.includes(m))
  const visits = wantsVisits ? await visitRows(tx, q, involved, range, state, hourlyFrom, maxFutureMs) : null
  // Visitors, page views and events of entry and exit pages, and of visit:source and the like, are those of
  // the visits entering or leaving there, or coming from there. They come from the visit rollups alone:
  // their remainder is the events trimmed too.
  if (visitOnly) return { rows: visits!.rows, source: 'visits', trimmed: visits!.trimmed.events, trimmedVisits: visits!.trimmed.visits }
  const totals = [...involved].every((d) => d === 'event_type')
  const oneDimension = involved.size === 1 && q.time !== 'hour'
  // A kept pair answers from its rollups the ranges it was counted for; raw events the rest.
  const pair = q.time === 'hour' ? undefined : pairOf([...involved])
  const pairCounted = pair && (!state.pairsSince || (range && range.from.getTime() >= state.pairsSince.getTime() + maxFutureMs))
  const source: Source = rawOnly || q.realtime || (local && !totals) ? 'raw' : totals ? 'totals' : oneDimension ? 'dims' : pairCounted ? 'pair' : 'raw'
  if (source === 'dims' && state.dimsSince && (!range || range.from.getTime() < state.dimsSince.getTime() + maxFutureMs)) {
    throw new QueryRefusedError(
      'dimensions_not_recorded',
      `dimensions are counted for events from ${new Date(state.dimsSince.getTime() + maxFutureMs).toISOString()} on (this install counted none before its upgrade); start the range later`,
    )
  }
  if (source === 'raw') refuseUnlessRaw(state, range, maxFutureMs)
  // A range in the site's zone is planned by the hour: only as far as data can be.
  const planned = range && local ? dataPart(range, now, maxFutureMs) : range
  const segments = planned && source !== 'raw' ? plan(planned.from, planned.to, local ? 'hour' : q.time) : null
  if (source === 'totals' && hourlyFrom && segments?.hour.some((b) => new Date(b) < hourlyFrom)) throw hourlyExpired(hourlyFrom)
  const parts = sources(tx, q, source, segments, range, state, pair)
  const [t, v] = [q.time ? tx`t` : tx`null::timestamptz`, q.dimension ? tx`v` : tx`null::text`]
  const [rows, trimmed] = await Promise.all([
    tx`
      select ${t} as t, ${v} as v, sum(events)::float8 as events, sum(pageviews)::float8 as pageviews,
             coalesce(hll_cardinality(hll_union_agg(users)), 0)::float8 as visitors
      from (${parts}) as s(t, v, events, pageviews, users)
      group by 1, 2`,
    source === 'dims'
      ? trimmedEvents(tx, q, () => tx`dim = ${[...involved][0]!}`, segments)
      : source === 'pair'
        ? trimmedEvents(tx, q, () => pairDims(tx, q, pair!), segments)
        : Promise.resolve(0),
  ])
  const out = rows as unknown as Row[]
  if (visits) {
    // Visit figures join the event figures of the same bucket and value.
    const byKey = new Map(visits.rows.map((r) => [key(r.t, r.v), r]))
    for (const r of out) Object.assign(r, pick(byKey.get(key(r.t, r.v))))
    const seen = new Set(out.map((r) => key(r.t, r.v)))
    for (const r of visits.rows) if (!seen.has(key(r.t, r.v))) out.push({ ...r, events: 0, pageviews: 0, visitors: 0 })
  }
  return { rows: out, source, trimmed, trimmedVisits: visits ? visits.trimmed.visits : null }
}

const pick = (r: Row | undefined) => ({
  visits: r?.visits ?? 0,
  bounces: r?.bounces ?? 0,
  duration_ms: r?.duration_ms ?? 0,
  visit_pageviews: r?.visit_pageviews ?? 0,
})

const hourlyExpired = (hourlyFrom: Date) =>
  new QueryRefusedError(
    'hourly_detail_expired',
    `hourly detail is kept only from ${hourlyFrom.toISOString()}; before that, ranges must start and end on UTC day boundaries and time cannot be by hour`,
  )

/**
 * Visit figures from the visit rollups plus the visits still open: one dimension at most
 * (a visit's attributes, entry or exit page, a path it viewed or an event type it sent).
 */
async function visitRows(
  tx: Tx,
  q: Query,
  involved: Set<Dimension>,
  range: Range | null,
  state: State,
  hourlyFrom: Date | null,
  maxFutureMs: number,
): Promise<{ rows: Row[]; trimmed: { visits: number; events: number } }> {
  // visit:source is kept as the visit rollups' source: a visit takes its attributes from its first event.
  const dims = [...involved].map(visitRollupDim)
  if (dims.length > 1 || (dims[0] && !isVisitDimension(dims[0]))) {
    throw new QueryRefusedError(
      'visits_one_dimension',
      `visit metrics, entry_page, exit_page and ${VISIT_PREFIX}* are counted by one dimension at a time, among ${VISIT_DIMENSIONS.join(', ')} (or ${VISIT_PREFIX}<attribute>); this query involves ${[...involved].join(', ')}`,
    )
  }
  const dim = dims[0] ?? ''
  // A visit counts under every path it viewed and every event type it sent: summing several
  // of those values would count a visit more than once.
  if ((dim === 'path' || dim === 'event_type') && q.filters.some((f) => f.op !== 'is' || f.values.length > 1)) {
    throw new QueryRefusedError(
      'visits_one_value',
      `visit metrics filtered by ${dim} take one value with "is": a visit that viewed several of the values would be counted once for each`,
    )
  }
  // As for dimensions: an event up to INGEST_MAX_FUTURE_MS ahead may have been counted before the upgrade.
  const visitsFrom = state.visitsSince && new Date(state.visitsSince.getTime() + maxFutureMs)
  if (visitsFrom && (!range || range.from < visitsFrom)) {
    throw new QueryRefusedError(
      'visits_not_recorded',
      `visits are counted for events from ${visitsFrom.toISOString()} on (this install counted none before its upgrade); start the range later`,
    )
  }
  // Visits closed before the upgrade that sketched their visitors by how they came count 0 visitors there.
  const sketchedFrom = state.visitSketchesSince && new Date(state.visitSketchesSince.getTime() + maxFutureMs)
  const acquisition = (ACQUISITION as readonly string[]).includes(dim) && [...involved].some((d) => d.startsWith(VISIT_PREFIX))
  if (acquisition && sketchedFrom && q.metrics.includes('visitors') && (!range || range.from < sketchedFrom)) {
    throw new QueryRefusedError(
      'visits_not_recorded',
      `visitors by ${VISIT_PREFIX}${dim} are counted for visits from ${sketchedFrom.toISOString()} on (this install kept no visitor sketch by it before its upgrade); start the range later, or ask for visits`,
    )
  }
  const segments = range ? plan(range.from, range.to, q.time) : null
  if (dim && segments?.hour.length) {
    throw new QueryRefusedError(
      'visits_whole_days',
      'visit metrics by a dimension are counted per day: ranges must start and end on UTC day boundaries, and time cannot be by hour',
    )
  }
  if (hourlyFrom && segments?.hour.some((b) => new Date(b) < hourlyFrom)) throw hourlyExpired(hourlyFrom)
  const levels = segments ? GRANULARITIES.filter((g) => segments[g].length > 0) : (['year'] as const)
  const filters = q.filters.map((f) => tx`and ${match(tx, tx`value`, f)}`).reduce((a, b) => tx`${a} ${b}`, tx``)
  const time = (col: Fragment) => (q.time ? tx`date_trunc(${q.time}, ${col}, 'UTC')` : tx`null::timestamptz`)
  const value = q.dimension ? tx`value` : tx`null::text`
  const rolled = levels.map(
    (g) => tx`
      select ${time(tx`bucket`)}, ${value}, visits, bounces, duration_ms, pageviews, events, users
      from ${tx(`rollup_${g}_visits`)} where site_id = ${q.siteId} and dim = ${dim} ${segments ? tx`and bucket = any(${segments[g]}::timestamptz[])` : tx``} ${filters}`,
  )
  const open = tx`
    select ${time(tx`v.started_at`)}, ${q.dimension ? tx`d.value` : tx`null::text`}, ${visitMeasures(tx as unknown as Sql)}
    from visits_open v cross join lateral (${visitPairs(tx as unknown as Sql)}) d
    where v.site_id = ${q.siteId} and d.dim = ${dim} ${range ? tx`and v.started_at >= ${range.from} and v.started_at < ${range.to}` : tx``}
    ${q.filters.map((f) => tx`and ${match(tx, tx`d.value`, f)}`).reduce((a, b) => tx`${a} ${b}`, tx``)}
    group by 1, 2`
  const [rows, trimmed] = await Promise.all([
    tx`
      select t, v, sum(visits)::float8 as visits, sum(bounces)::float8 as bounces, sum(duration_ms)::float8 as duration_ms,
             sum(pageviews)::float8 as pageviews, sum(events)::float8 as events, coalesce(hll_cardinality(hll_union_agg(users)), 0)::float8 as visitors
      from (${[...rolled, open].reduce((a, b) => tx`${a} union all ${b}`)}) as s(t, v, visits, bounces, duration_ms, pageviews, events, users)
      group by 1, 2`,
    // Values past ROLLUP_DIM_CAP in the buckets read: their visits and events are in no row. The totals ('') have no cap.
    dim === '' ? { visits: 0, events: 0 } : remainder(tx, q, 'visit_other', () => tx`dim = ${dim}`, segments),
  ])
  return { rows: (rows as unknown as (Row & { pageviews: number })[]).map((r) => ({ ...r, visit_pageviews: r.pageviews })), trimmed }
}

type Row = {
  t: Date | null
  v: string | null
  events: number
  pageviews: number
  visitors: number
  visits?: number
  bounces?: number
  duration_ms?: number
  /** Page views within the visits counted (views_per_visit's numerator). */
  visit_pageviews?: number
  conversion_rate?: number
}
type Range = { from: Date; to: Date }

/**
 * The part of a range that data can be in. No event is timestamped later than
 * `maxFutureMs` after it was stored, so nothing lies past the hour after now + maxFutureMs:
 * an hourly plan stops there, and a range that ends in 9998 plans no 70 million hours. Only
 * for hourly plans: cut at an hour, a coarser plan would trade whole days for hours, which
 * the dimension rollups do not have.
 */
function dataPart(range: Range, now: Date, maxFutureMs: number): Range {
  const horizon = add(truncate(new Date(now.getTime() + maxFutureMs), 'hour'), 'hour')
  return range.to <= horizon ? range : { from: range.from, to: new Date(Math.max(range.from.getTime(), horizon.getTime())) }
}

/** Two dimensions at once, but for a kept pair, are answered from raw events, which must all still be kept for the range. */
function refuseUnlessRaw(state: State, range: Range | null, maxFutureMs: number) {
  if (!state.rawDroppedBefore) return
  // An event timestamped at t was stored no earlier than t - maxFutureMs.
  const since = new Date(state.rawDroppedBefore.getTime() + maxFutureMs)
  if (range && range.from >= since) return
  throw new QueryRefusedError(
    'needs_raw_events',
    `filters or breakdowns on two dimensions at once (but for ${PAIRS.map(([x, y]) => `${x} with ${y}`).join(', ')}, counted together${state.pairsSince ? ` from ${state.pairsSince.toISOString()} on` : ''}), or an hourly breakdown by a dimension, are answered from raw events, which are kept from ${since.toISOString()} on (RAW_RETENTION_HOURS); narrow the range or query one dimension at a time`,
  )
}

/** The range of "all" with a time dimension: from the first year holding this site's data to the last an event can be in. */
async function allTime(tx: Tx, siteId: string, now: Date, maxFutureMs: number): Promise<Range> {
  const [row] = await tx`
    select least((select min(bucket) from rollup_year where site_id = ${siteId}),
                 (select min(ts) from events where site_id = ${siteId} and xid >= ${siteWatermark(tx as unknown as Sql, siteId)})) as first`
  const first = (row!.first as Date | null) ?? now
  return { from: truncate(first, 'year'), to: add(truncate(new Date(now.getTime() + maxFutureMs), 'year'), 'year') }
}

/** The rows to aggregate: (time, value, events, pageviews, users) from rollups and raw events, or raw events alone. */
function sources(
  tx: Tx,
  q: Query,
  source: Source,
  segments: ReturnType<typeof plan> | null,
  range: Range | null,
  state: State,
  pair: (typeof PAIRS)[number] | undefined,
): Fragment {
  const { log2m, regwidth, expthresh, sparseon } = HLL
  const pv = PAGEVIEW_TYPES as unknown as string[]
  const time = (col: Fragment) => {
    if (!q.time) return tx`null::timestamptz`
    if (q.timezone === 'UTC' || q.time === 'hour') return tx`date_trunc(${q.time}, ${col}, 'UTC')`
    // The local bucket of the UTC hour's last moment: a day starts at the UTC hour holding local midnight.
    return tx`date_trunc(${q.time}, date_trunc('hour', ${col}, 'UTC') + interval '3599.999999 seconds', ${q.timezone})`
  }
  const inRange = range ? tx`and ts >= ${range.from} and ts < ${range.to}` : tx``
  /** Every filter of the query, as `and` clauses on the value `valueFor` gives for its dimension. */
  const where = (valueFor: (f: Filter) => Fragment) => q.filters.map((f) => tx`and ${match(tx, valueFor(f), f)}`).reduce((a, b) => tx`${a} ${b}`, tx``)
  const rawFilters = where((f) => dimensionValue(tx, f.dim))
  const rawValue = q.dimension ? dimensionValue(tx, q.dimension) : tx`null::text`
  const raw = (above: boolean) => tx`
    select ${time(tx`ts`)}, ${rawValue}, count(*)::bigint, (count(*) filter (where event_type = any(${pv})))::bigint,
           hll_add_agg(hll_hash_text(user_id), ${log2m}, ${regwidth}, ${expthresh}, ${sparseon})
    from events where site_id = ${q.siteId} ${above ? tx`and xid >= ${state.watermark}::xid8` : tx``} ${inRange} ${rawFilters}
    ${q.dimension?.startsWith('props:') ? tx`and ${rawValue} is not null` : tx``}
    group by 1, 2`
  if (source === 'raw') return raw(false)
  const levels = (segments ? (Object.keys(segments) as Granularity[]).filter((g) => segments[g].length > 0) : ['year' as const]).filter(
    (g) => source === 'totals' || g !== 'hour',
  )
  const inSegments = (g: Granularity) => (segments ? tx`and bucket = any(${segments[g]}::timestamptz[])` : tx``)
  const rolled = levels.map((g) => {
    if (source === 'totals') {
      return tx`
        select ${time(tx`bucket`)}, ${q.dimension ? tx`event_type` : tx`null::text`}, views,
               case when event_type = any(${pv}) then views else 0 end, users
        from ${tx(`rollup_${g}`)} where site_id = ${q.siteId} ${inSegments(g)} ${where(() => tx`event_type`)}`
    }
    if (source === 'pair') {
      // A pair [a, b] is kept as the dimensions a&b=<b's value>, whose values are a's.
      const part = (d: Dimension) => (d === pair![0] ? tx`value` : pairSecond(tx, pair!))
      return tx`
        select ${time(tx`bucket`)}, ${q.dimension ? part(q.dimension) : tx`null::text`}, events, pageviews, users
        from ${tx(`rollup_${g}_dims`)} where site_id = ${q.siteId} and starts_with(dim, ${pairPrefix(pair!)}) ${inSegments(g)} ${where((f) => part(f.dim))}`
    }
    const dim = q.dimension ?? q.filters[0]!.dim
    return tx`
      select ${time(tx`bucket`)}, ${q.dimension ? tx`value` : tx`null::text`}, events, pageviews, users
      from ${tx(`rollup_${g}_dims`)} where site_id = ${q.siteId} and dim = ${dim} ${inSegments(g)} ${where(() => tx`value`)}`
  })
  return [...rolled, raw(true)].reduce((a, b) => tx`${a} union all ${b}`)
}

/** A filter as SQL on a value expression ('' stands for an absent value). */
function match(tx: Tx, value: Fragment, f: Filter): Fragment {
  if (f.op === 'is') return tx`${value} = any(${f.values})`
  if (f.op === 'is_not') return tx`${value} <> all(${f.values})`
  const escaped = f.values.map((x) => x.replace(/[\\%_]/g, (c) => `\\${c}`))
  const patterns = f.op === 'matches' ? escaped.map((x) => x.replaceAll('*', '%')) : escaped.map((x) => `%${x}%`)
  return tx`${value} like any(${patterns})`
}

/** The value of a kept pair's second dimension, from its rollup rows' dim. */
const pairSecond = (tx: Tx, pair: readonly [string, string]) => tx`substr(dim, ${pairPrefix(pair).length + 1})`

/** The rollup rows of a kept pair that the query's filters on its second dimension leave: its remainders that may hold the query's events. */
function pairDims(tx: Tx, q: Query, pair: readonly [string, string]): Fragment {
  const second = q.filters.filter((f) => f.dim === pair[1]).map((f) => tx`and ${match(tx, pairSecond(tx, pair), f)}`)
  return tx`starts_with(dim, ${pairPrefix(pair)}) ${second.reduce((a, b) => tx`${a} ${b}`, tx``)}`
}

/** Events of values trimmed from the dimension rollups in the segments read, of the dimensions `dims` selects. */
async function trimmedEvents(tx: Tx, q: Query, dims: () => Fragment, segments: ReturnType<typeof plan> | null): Promise<number> {
  return (await remainder(tx, q, 'dim_other', dims, segments)).events
}

/**
 * The visits and events of values past ROLLUP_DIM_CAP, from a remainder table
 * (rollup_<g>_dim_other or rollup_<g>_visit_other), in the day, month and year segments
 * read (all years without segments), of the dimensions `dims` selects. Events only for
 * dim_other, which counts no visits.
 */
async function remainder(
  tx: Tx,
  q: Query,
  table: 'dim_other' | 'visit_other',
  dims: () => Fragment,
  segments: ReturnType<typeof plan> | null,
): Promise<{ events: number; visits: number }> {
  const levels = segments ? (['day', 'month', 'year'] as const).filter((g) => segments[g].length > 0) : (['year'] as const)
  if (levels.length === 0) return { events: 0, visits: 0 }
  const visits = table === 'visit_other' ? tx`visits` : tx`0::bigint`
  const parts = levels.map(
    (g) =>
      tx`select events, ${visits} as visits from ${tx(`rollup_${g}_${table}`)} where site_id = ${q.siteId} and ${dims()} ${segments ? tx`and bucket = any(${segments[g]}::timestamptz[])` : tx``}`,
  )
  const [row] = await tx`
    select coalesce(sum(events), 0)::float8 as events, coalesce(sum(visits), 0)::float8 as visits
    from (${parts.reduce((a, b) => tx`${a} union all ${b}`)}) as o`
  return row as unknown as { events: number; visits: number }
}

/** Rows in the order asked, limited, each as {dimensions, metrics} in the order of the query. */
function shape(rows: Row[], q: Query): QueryResult['results'] {
  // A query without dimensions has one row of totals, even when nothing matched.
  if (!q.dimension && !q.time && rows.length === 0) rows = [{ t: null, v: null, events: 0, pageviews: 0, visitors: 0 }]
  const key = (r: Row, k: Query['orderBy'][number]['key']) => (k === 'time' ? (r.t?.getTime() ?? 0) : k === 'dimension' ? (r.v ?? '') : metric(r, k))
  // Ties under the order asked go by value, then time: the same rows make the limit on every call.
  const order = [...q.orderBy, { key: 'dimension', desc: false } as const, { key: 'time', desc: false } as const]
  rows.sort((a, b) => {
    for (const { key: k, desc } of order) {
      const x = key(a, k)
      const y = key(b, k)
      if (x < y) return desc ? 1 : -1
      if (x > y) return desc ? -1 : 1
    }
    return 0
  })
  return rows.slice(0, q.limit).map((r) => ({
    dimensions: q.order.map((o) => (o === 'time' ? timeLabel(r.t!, q.time!, q.timezone) : r.v === '' ? NONE : r.v)),
    metrics: q.metrics.map((m) => metric(r, m)),
  }))
}

/** A metric's figure for a row: visit figures are means and shares of its visits (0 without visits). */
function metric(r: Row, m: Metric): number {
  const visits = r.visits ?? 0
  switch (m) {
    case 'visitors':
      return Math.round(r.visitors)
    case 'visits':
      return visits
    case 'bounce_rate':
      return visits ? Math.round((1000 * (r.bounces ?? 0)) / visits) / 10 : 0
    case 'visit_duration':
      return visits ? Math.round((r.duration_ms ?? 0) / visits / 1000) : 0
    case 'views_per_visit':
      return visits ? Math.round((100 * (r.visit_pageviews ?? 0)) / visits) / 100 : 0
    case 'conversion_rate':
      return r.conversion_rate ?? 0
    default:
      return r[m]
  }
}

/** Days, months and years as YYYY-MM-DD (their first day); hours as an ISO instant. */
const timeLabel = (t: Date, g: Granularity, tz: string) =>
  g === 'hour' ? t.toISOString().replace('.000Z', 'Z') : tz === 'UTC' ? t.toISOString().slice(0, 10) : localDate(t.getTime(), tz)
