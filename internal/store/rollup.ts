import type postgres from 'postgres'
import type { TransactionSql } from 'postgres'
import type { Sql } from '../clients/clients.ts'
import { setAside } from './rejects.ts'
import { GRANULARITIES } from './buckets.ts'
import { ATTRIBUTES, DIM_GRANULARITIES, type DimGranularity, PAGEVIEW_TYPES, PAIRS, PROPS_PREFIX, pairPrefix } from './dimensions.ts'
import { closeVisits, mergeVisits, VISIT_GAP_MS } from '../visits/visits.ts'
import { addCounts, foldBeyondCap } from './cap.ts'
import { isDataError } from './errors.ts'
import { PATH_MAX_BYTES } from '../event/event.ts'

/** HyperLogLog parameters for unique users: 2^14 registers of 5 bits, exact up to 1280 users. */
export const HLL = { log2m: 14, regwidth: 5, expthresh: -1, sparseon: 1 } as const
/** The explicit-mode threshold those parameters give: below it, unique users are exact. */
export const HLL_EXACT_UP_TO = 1280

export type RollupOptions = {
  /** Most paths kept per site, bucket and event type; the rest fold into other_path_views. */
  pathCap?: number
  /** Most values kept per site, bucket and dimension; the rest fold into rollup_*_dim_other. */
  dimCap?: number
  /** Most transaction ids one rollup transaction covers, which bounds its size. */
  chunkXids?: number
  /**
   * How many shards of sites are counted at once, each in a transaction (and a Postgres
   * backend) of its own (ROLLUP_SHARDS). A change is applied at the start of a run.
   */
  shards?: number
  /** A visit nothing has been received for in this long is closed and counted (VISIT_CLOSE_AFTER_MS). */
  visitCloseAfterMs?: number
  /**
   * When the oldest event still waiting in the queue (received, not yet stored) was
   * received; null when none. Visits are closed only as far as every event received before
   * that point is merged: see `close` in rollupShard.
   */
  unstoredSince?: () => Promise<Date | null>
  /** False leaves visits out entirely: only for benchmarks, which measure what visits cost. */
  visits?: boolean
  now?: () => Date
  signal?: AbortSignal
}

export type RollupResult = {
  /** False when other processes held every shard (or the change of shards); nothing was done. */
  ran: boolean
  chunks: number
  events: number
  /** Raw events that could not be counted, moved to rollup_rejects (see rejects.ts). */
  setAside: number
  /** Visits closed and counted. */
  visits: number
  /** The lowest watermark of all shards: every raw row below it is counted. */
  watermark: string
}

/**
 * The watermark of the shard that holds `siteId`, as a scalar subquery: the raw rows of the
 * site at or above it are not yet counted in the rollups. The SQL function
 * sluice_rollup_watermark says the same, but a call is planned afresh every time (measured:
 * about 100 µs a query), where this is planned with the query.
 */
export const siteWatermark = (tx: Sql, siteId: string) => tx`(select xid_watermark from rollup_shards where shard = sluice_shard(${siteId}, shards))`

/** The most shards (the migration's check on rollup_shards agrees). */
export const MAX_SHARDS = 64

/** One shard of sites: those whose sluice_shard(site_id, of) is `shard`. */
type Shard = { shard: number; of: number }

/** The SQL condition that a row's site_id belongs to the shard (none when there is one shard). */
const inShard = (tx: Sql, { shard, of }: Shard) => (of === 1 ? tx`true` : tx`sluice_shard(site_id, ${of}) = ${shard}`)

type Run = Omit<RollupResult, 'watermark'>
const nothing = (): Run => ({ ran: false, chunks: 0, events: 0, setAside: 0, visits: 0 })
const add = (a: Run, b: Run): Run => ({
  ran: a.ran || b.ran,
  chunks: a.chunks + b.chunks,
  events: a.events + b.events,
  setAside: a.setAside + b.setAside,
  visits: a.visits + b.visits,
})

/**
 * Counts raw events not yet counted into the hour, day, month and year rollups.
 *
 * Sites are split into `shards`, each counted in its own transactions, all at once. A
 * shard's chunk is one transaction that locks the shard's row of rollup_shards (a shard
 * another process holds is skipped), reads its watermark, counts the shard's raw rows whose
 * inserting transaction id lies in [watermark, horizon), upserts them into every rollup
 * table and moves the watermark to horizon. horizon is at most the oldest transaction still
 * running, so no row below it can still appear. A crash anywhere rolls the whole chunk back:
 * every event is counted exactly once. Every rollup row is keyed by site, so shards never
 * write the same rows.
 */
/**
 * Throws when a shard's watermark, or a raw row's xid, is ahead of every transaction id this
 * cluster has given out: the database was restored into another cluster (pg_dump, logical
 * replication), whose ids start lower. Every new row would then sit below the watermark,
 * never counted, and retention would drop it as counted. docs/rollups.md says how to reset
 * the watermarks.
 */
export async function requireWatermarksOfThisCluster(sql: Sql): Promise<void> {
  // Raw rows keep their ids through a dump too (events.xid is a column): those are checked as well, by their index.
  const [row] = await sql`
    select greatest((select max(xid_watermark) from rollup_shards), (select max(xid) from events))::text as ahead,
           pg_snapshot_xmax(pg_current_snapshot())::text as next
    where greatest((select max(xid_watermark) from rollup_shards), (select max(xid) from events)) > pg_snapshot_xmax(pg_current_snapshot())`
  if (row) {
    throw new Error(
      `a rollup watermark or raw row's transaction id (${row.ahead}) is ahead of this cluster's (next ${row.next}): the database was restored into another cluster; the rollup and retention stop until the watermarks are reset (docs/rollups.md, "Restoring into another cluster")`,
    )
  }
}

export async function rollup(sql: Sql, options: RollupOptions = {}): Promise<RollupResult> {
  const shards = options.shards ?? 2
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) throw new RangeError(`shards must be an integer from 1 to ${MAX_SHARDS}, not ${shards}`)
  await requireWatermarksOfThisCluster(sql)
  const resharded = await reshard(sql, shards, options)
  // Until the change can be made, the shards as they are keep being counted.
  const of = resharded.ready ? shards : resharded.of
  const run = (await settled(Array.from({ length: of }, (_, shard) => rollupShard(sql, { shard, of }, options)))).reduce(add, resharded.run)
  const [low] = await sql`select sluice_rollup_low_watermark()::text as w`
  return { ...run, watermark: low!.w as string }
}

/** Every shard's run, once all have ended (none is left running behind a failure); throws the first failure. */
async function settled(runs: Promise<Run>[]): Promise<Run[]> {
  const all = await Promise.allSettled(runs)
  const failed = all.find((r) => r.status === 'rejected')
  if (failed) throw failed.reason
  return all.map((r) => (r as PromiseFulfilledResult<Run>).value)
}

/**
 * Makes rollup_shards hold `shards` shards. A site's shard depends on their number, so the
 * old shards are first brought to one watermark (the highest of theirs, which was a horizon
 * once, so each can reach it), then replaced in one transaction by as many new ones, all at
 * that watermark. Not ready when another process holds a shard, or after three tries: the
 * next run tries again. Every process that runs the rollup should have the same number: two
 * that differ keep changing it back (still counting every event once, but each change costs
 * a catch-up).
 */
async function reshard(sql: Sql, shards: number, options: RollupOptions): Promise<{ ready: boolean; of: number; run: Run }> {
  let run = nothing()
  for (let attempt = 0; ; attempt++) {
    const rows = await sql`select shard, shards, xid_watermark::text as w from rollup_shards order by shard`
    const of = rows[0]!.shards as number
    if (of === shards) return { ready: true, of, run }
    if (attempt === 3 || options.signal?.aborted) return { ready: false, of, run }
    const target = rows.map((r) => BigInt(r.w)).reduce((a, b) => (a > b ? a : b))
    const caught = await settled(rows.map((r) => rollupShard(sql, { shard: r.shard as number, of }, options, target)))
    run = caught.reduce(add, run)
    if (caught.some((c) => !c.ran)) return { ready: false, of, run }
    const replaced = await sql.begin(async (tx) => {
      const locked = await tx`select shards, xid_watermark::text as w from rollup_shards for update skip locked`
      if (locked.length !== of || locked.some((r) => r.shards !== of || BigInt(r.w) !== target)) return false
      await tx`delete from rollup_shards`
      await tx`insert into rollup_shards (shard, shards, xid_watermark, rolled_at) select k, ${shards}, ${String(target)}::xid8, now() from generate_series(0, ${shards - 1}) k`
      return true
    })
    if (replaced) return { ready: true, of: shards, run }
    // A shard moved meanwhile (another process counted it): catch up again.
  }
}

/**
 * Counts one shard's raw rows in chunks, up to the horizon (or to `upTo`). Not ran when
 * another process holds the shard, or it is no longer one of the current shards.
 */
async function rollupShard(sql: Sql, shard: Shard, options: RollupOptions, upTo?: bigint): Promise<Run> {
  const {
    pathCap = 1000,
    dimCap = 1000,
    chunkXids = 500,
    visitCloseAfterMs = VISIT_GAP_MS,
    visits: withVisits = true,
    now = () => new Date(),
    unstoredSince,
    signal,
  } = options
  const caps = { pathCap, dimCap, visits: withVisits }
  // A visit closes once nothing has been received for it in visitCloseAfterMs, judged from
  // the events merged so far: not from now while older events wait, stored but not yet
  // counted (the rollup catching up) or still in the queue (workers behind). Else a
  // backlog would cut every visit in two at each chunk's end. Stored rows wait from the
  // earliest receipt among them, not that of the first in transaction order: a batch
  // retried after another worker took it over commits after events received later. That
  // reads every row not yet counted: a few when caught up, the backlog while catching up
  // (0.13-0.17 s for one shard of 2 over 1,000,000 rows, measured, against some 30 s to
  // count them). The queue is read first: an event a
  // worker stores and deletes from it meanwhile is then committed before the raw read,
  // which sees it (each statement reads the latest commits), so neither read can miss it.
  const close = async (tx: TransactionSql, counted: bigint) => {
    if (!withVisits) return 0
    const queued = unstoredSince ? await unstoredSince() : null
    const [next] = await tx`
      select min(received_at) as received_at from events where xid >= ${String(counted)}::xid8 and ${inShard(tx as unknown as Sql, shard)}`
    const heldTo = Math.min(now().getTime(), (next?.received_at as Date | undefined)?.getTime() ?? Infinity, queued?.getTime() ?? Infinity)
    return closeVisits(tx as unknown as Sql, { before: new Date(heldTo - visitCloseAfterMs), dimCap, sites: inShard(tx as unknown as Sql, shard) })
  }
  let run = nothing()
  for (;;) {
    const chunk = await sql.begin(async (tx) => {
      const [row] = await tx`select xid_watermark::text as lo, shards from rollup_shards where shard = ${shard.shard} for update skip locked`
      if (row === undefined || row.shards !== shard.of) return null
      await tx`set local work_mem = '256MB'`
      // Compiling a chunk's statements took longer than running them (seconds each, measured).
      await tx`set local jit = off`
      const lo = BigInt(row.lo)
      const [state] = await tx`
        with s as (select pg_snapshot_xmin(pg_current_snapshot()) as horizon)
        select horizon::text, (select min(xid) from events where xid >= ${String(lo)}::xid8 and xid < s.horizon and ${inShard(tx as unknown as Sql, shard)})::text as first
        from s`
      const { horizon: h, first } = state as { horizon: string; first: string | null }
      const horizon = upTo !== undefined && upTo < BigInt(h) ? upTo : BigInt(h)
      // Start at the shard's oldest row not yet counted, so stretches of transaction ids without any cost nothing.
      const start = first === null ? horizon : BigInt(first)
      const hi = start + BigInt(chunkXids) < horizon ? start + BigInt(chunkXids) : horizon
      if (hi <= lo) return { events: 0, setAside: 0, visits: await close(tx, lo), done: true }
      const counted = await rollupSettling(tx, shard, lo, hi, caps)
      await tx`update rollup_shards set xid_watermark = ${String(hi)}::xid8, rolled_at = now() where shard = ${shard.shard}`
      return { ...counted, visits: await close(tx, hi), done: hi === horizon }
    })
    if (chunk === null) return run
    const counted = chunk.events > 0 || chunk.setAside > 0 || !chunk.done
    run = add(run, { ran: true, chunks: counted ? 1 : 0, events: chunk.events, setAside: chunk.setAside, visits: chunk.visits })
    if (chunk.done || signal?.aborted) return run
  }
}

export type RollupLag = {
  /** How long the oldest raw event not yet counted has waited since it was stored; 0 when every event is counted. */
  ageSeconds: number
  /** Raw events not yet counted. */
  unrolled: number
  /** Events set aside in rollup_rejects, waiting for an operator. */
  rejected: number
}

/**
 * How far the rollups are behind. The age grows only while stored events wait, so an idle
 * site reads 0 and a stalled rollup reads ever higher: alert on it (docs/rollups.md).
 */
export async function rollupLag(sql: Sql): Promise<RollupLag> {
  const [row] = await sql`
    with unrolled as (${unrolledRows(sql)})
    select coalesce(extract(epoch from now() - (select inserted_at from unrolled order by xid limit 1)), 0)::float8 as age,
           (select count(*) from unrolled)::float8 as unrolled,
           (select count(*) from rollup_rejects)::float8 as rejected`
  return { ageSeconds: Math.max(0, row!.age as number), unrolled: row!.unrolled as number, rejected: row!.rejected as number }
}

export type ShardStatus = {
  shard: number
  /** How many shards there are. */
  of: number
  /** Every raw row of the shard's sites below it is counted. */
  watermark: string
  /** When a chunk of the shard last committed (or the shards were last changed). */
  rolledAt: Date | null
  /** Raw events of the shard's sites not yet counted. */
  unrolled: number
}

/**
 * Each shard's watermark and what it has not yet counted: a shard that stays behind the
 * others (held by a process that hangs, say) shows here, where rollupLag shows only the oldest wait.
 */
export async function rollupShards(sql: Sql): Promise<ShardStatus[]> {
  const rows = await sql`
    select w.shard, w.shards as of, w.xid_watermark::text as watermark, w.rolled_at as "rolledAt", coalesce(u.n, 0)::float8 as unrolled
    from rollup_shards w left join (select shard, count(*) as n from (${unrolledRows(sql)}) r group by shard) u using (shard)
    order by w.shard`
  return rows as unknown as ShardStatus[]
}

/**
 * The raw rows not yet counted, each with its shard: those at or above their own shard's
 * watermark. The join key depends on the row alone (the number of shards is one for all),
 * so Postgres can hash it.
 */
const unrolledRows = (sql: Sql) => sql`
  select e.xid, e.inserted_at, w.shard from events e
  join rollup_shards w on w.shard = sluice_shard(e.site_id, (select max(shards) from rollup_shards))
  where e.xid >= (select sluice_rollup_low_watermark()) and e.xid >= w.xid_watermark`

/** Which raw rows one attempt counts: a range of inserting transaction ids, or some rows of one transaction. */
type Scope = { lo: bigint; hi: bigint } | { xid: bigint; ids: string[] }

/**
 * Counts the raw rows of [lo, hi) into the rollups. When Postgres refuses their data (a
 * value too large for an index, say), it splits the range in halves, then a transaction's
 * rows in halves, down to the rows that fail on their own; those are set aside in
 * rollup_rejects and everything else is counted. Each attempt runs in a savepoint, so a
 * failed one leaves nothing behind; all of it is still one transaction with the watermark.
 */
type Caps = { pathCap: number; dimCap: number; visits: boolean }

async function rollupSettling(tx: TransactionSql, shard: Shard, lo: bigint, hi: bigint, caps: Caps): Promise<{ events: number; setAside: number }> {
  const out = { events: 0, setAside: 0 }
  const attempt = async (scope: Scope): Promise<void> => {
    try {
      out.events += await tx.savepoint((sp) => rollupRange(sp as unknown as Sql, shard, scope, caps))
      return
    } catch (err) {
      if (!isDataError(err)) throw err
      if ('lo' in scope && scope.hi - scope.lo > 1n) {
        const mid = scope.lo + (scope.hi - scope.lo) / 2n
        await attempt({ lo: scope.lo, hi: mid })
        await attempt({ lo: mid, hi: scope.hi })
        return
      }
      const xid = 'lo' in scope ? scope.lo : scope.xid
      const ids =
        'ids' in scope
          ? scope.ids
          : (await tx`select event_id from events where xid = ${String(xid)}::xid8 and ${inShard(tx as unknown as Sql, shard)} order by event_id`).map(
              (r) => r.event_id as string,
            )
      if (ids.length > 1) {
        const half = Math.ceil(ids.length / 2)
        await attempt({ xid, ids: ids.slice(0, half) })
        await attempt({ xid, ids: ids.slice(half) })
        return
      }
      if (ids.length === 1) {
        await setAside(tx as unknown as Sql, String(xid), ids[0]!, err as Error & { code?: string })
        out.setAside++
      }
    }
  }
  await attempt({ lo, hi })
  return out
}

/** Counts the raw rows in scope into every rollup table; returns how many there were. */
async function rollupRange(tx: Sql, shard: Shard, scope: Scope, { pathCap, dimCap, visits }: Caps): Promise<number> {
  const { log2m, regwidth, expthresh, sparseon } = HLL
  const rows =
    'lo' in scope
      ? tx`xid >= ${String(scope.lo)}::xid8 and xid < ${String(scope.hi)}::xid8 and ${inShard(tx, shard)}`
      : tx`xid = ${String(scope.xid)}::xid8 and event_id = any(${scope.ids}::uuid[])`
  await tx`
    create temp table rollup_chunk on commit drop as
    select site_id, date_trunc('hour', ts, 'UTC') as bucket, event_type, count(*)::bigint as views,
           hll_add_agg(hll_hash_text(user_id), ${log2m}, ${regwidth}, ${expthresh}, ${sparseon}) as users,
           max(octet_length(path)) as longest_path
    from events where ${rows}
    group by 1, 2, 3`
  const [{ n, longest }] =
    (await tx`select coalesce(sum(views), 0)::float8 as n, coalesce(max(longest_path), 0)::int as longest from rollup_chunk`) as unknown as [
      { n: number; longest: number },
    ]
  if (n === 0) {
    await tx`drop table rollup_chunk`
    return 0
  }
  // A path longer than the API accepts (a row an older version or a hand-written insert
  // stored) can fit every key written here and still not the visit rollups' key, whose
  // dimension name is longer: closing the visit, later and outside this savepoint, would then
  // fail on every run and stall the shard. Refused here, as a data error, it is set aside.
  if (longest > PATH_MAX_BYTES) throw Object.assign(new Error(`a path of ${longest} bytes, over the ${PATH_MAX_BYTES} the API accepts`), { code: '22001' })
  await tx`
    create temp table rollup_chunk_paths on commit drop as
    select site_id, date_trunc('hour', ts, 'UTC') as bucket, event_type, path, count(*)::bigint as views
    from events where ${rows} and path is not null
    group by 1, 2, 3, 4`
  await countDimensions(tx, rows)
  if (visits) await mergeVisits(tx, rows)
  const [{ days }] = (await tx`select count(distinct bucket)::int as days from rollup_chunk_dims`) as unknown as [{ days: number }]
  for (const g of DIM_GRANULARITIES) await rollupDims(tx, g, dimCap, days <= 1)
  // The chunk's rows are per hour already. The day level is grouped from them once, and
  // month and year from the day rows: taken as they are when the chunk spans one day.
  const groupTotals = (g: string, source: postgres.PendingQuery<postgres.Row[]>) =>
    tx`select site_id, date_trunc(${g}, bucket, 'UTC') as bucket, event_type, sum(views)::bigint as views, sluice_hll_union(users) as users
       from ${source} group by 1, 2, 3`
  const groupPaths = (g: string, source: postgres.PendingQuery<postgres.Row[]>) =>
    tx`select site_id, date_trunc(${g}, bucket, 'UTC') as bucket, event_type, path, sum(views)::bigint as views
       from ${source} group by 1, 2, 3, 4`
  await tx`create temp table rollup_chunk_day on commit drop as ${groupTotals('day', tx`rollup_chunk`)}`
  await tx`create temp table rollup_chunk_day_paths on commit drop as ${groupPaths('day', tx`rollup_chunk_paths`)}`
  for (const g of GRANULARITIES) {
    const table = tx(`rollup_${g}`)
    const paths = tx(`rollup_${g}_paths`)
    const from =
      g === 'hour' ? { totals: tx`rollup_chunk`, paths: tx`rollup_chunk_paths` } : { totals: tx`rollup_chunk_day`, paths: tx`rollup_chunk_day_paths` }
    const asIs = g === 'hour' || g === 'day' || days <= 1
    const totals = asIs ? tx`select * from ${from.totals}` : groupTotals(g, from.totals)
    const pathRows = asIs ? tx`select * from ${from.paths}` : groupPaths(g, from.paths)
    await tx`
      insert into ${table} as r (site_id, bucket, event_type, views, users)
      select site_id, date_trunc(${g}, bucket, 'UTC'), event_type, views, users from (${totals}) c
      on conflict (site_id, bucket, event_type)
      do update set views = r.views + excluded.views, users = hll_union(r.users, excluded.users)`
    await tx`
      insert into ${paths} as r (site_id, bucket, event_type, path, views)
      select site_id, date_trunc(${g}, bucket, 'UTC'), event_type, path, views from (${pathRows}) c
      on conflict (site_id, bucket, event_type, path)
      do update set views = r.views + excluded.views`
    // Keep the pathCap most viewed paths of each bucket this chunk touched; fold the rest.
    await tx`
      with touched as (
        select distinct site_id, date_trunc(${g}, bucket, 'UTC') as bucket, event_type from ${from.totals}
      ),
      crowded as (
        select p.site_id, p.bucket, p.event_type from ${paths} p join touched t using (site_id, bucket, event_type)
        group by 1, 2, 3 having count(*) > ${pathCap}
      ),
      ranked as (
        select p.site_id, p.bucket, p.event_type, p.path,
               row_number() over (partition by p.site_id, p.bucket, p.event_type order by p.views desc, p.path) as rank
        from ${paths} p join crowded c using (site_id, bucket, event_type)
      ),
      trimmed as (
        delete from ${paths} p using ranked k
        where k.rank > ${pathCap} and p.site_id = k.site_id and p.bucket = k.bucket and p.event_type = k.event_type and p.path = k.path
        returning p.site_id, p.bucket, p.event_type, p.views
      )
      update ${table} r set other_path_views = r.other_path_views + f.views
      from (select site_id, bucket, event_type, sum(views) as views from trimmed group by 1, 2, 3) f
      where r.site_id = f.site_id and r.bucket = f.bucket and r.event_type = f.event_type`
  }
  // A chunk that had to be split counts several scopes in one transaction.
  await tx`drop table rollup_chunk, rollup_chunk_paths, rollup_chunk_day, rollup_chunk_day_paths, rollup_chunk_rows, rollup_chunk_dims`
  return n
}

/**
 * Counts the scope's raw rows per (site, day, dimension, value) into rollup_chunk_dims.
 * The raw rows first fold into one row per (site, day, visitor, values of every attribute:
 * the dimensions but path and event_type) with their event and page-view counts. A visitor's
 * attributes rarely change within a day, so this leaves about a row per visitor where path
 * would have left nearly a row per event; and the sketch of a set is the same however often
 * a hash is added. One pass over those rows with a grouping set per attribute (faster than
 * one statement per dimension, and far faster than a lateral unpivot), then path and
 * event_type, then custom properties, from the raw rows. Text columns are copied with the
 * "C" collation: the grouping sets sort, and byte order is the cheapest. A missing value is
 * folded as '' (what its rollup row stores), before any grouping: '' and null (a hand-written
 * row may hold either) must group as one value, or the upsert would meet its key twice.
 */
async function countDimensions(tx: Sql, rows: postgres.PendingQuery<postgres.Row[]>): Promise<void> {
  const { log2m, regwidth, expthresh, sparseon } = HLL
  const pv = PAGEVIEW_TYPES as unknown as string[]
  const list = (parts: postgres.PendingQuery<postgres.Row[]>[]) => parts.reduce((acc, p) => tx`${acc}, ${p}`)
  const folded = (d: string) => tx`coalesce(${tx(d)}, '') collate "C"`
  await tx`
    create temp table rollup_chunk_rows on commit drop as
    select site_id collate "C" as site_id, date_trunc('day', ts, 'UTC') as bucket, hll_hash_text(user_id) as h,
           ${list(ATTRIBUTES.map((d) => tx`${folded(d)} as ${tx(d)}`))},
           count(*) as events, count(*) filter (where event_type = any(${pv})) as pageviews
    from events where ${rows}
    group by site_id, 2, user_id, ${list(ATTRIBUTES.map(folded))}`
  // Column names are identifiers from DIMENSIONS; the dimension names themselves go in as text literals (grouping() needs the columns).
  const grouped = (columns: readonly string[]) => ({
    dim: tx`case ${columns.map((d) => tx`when grouping(${tx(d)}) = 0 then ${d}::text`).reduce((acc, p) => tx`${acc} ${p}`)} end`,
    value: tx`coalesce(${list(columns.map((d) => tx`case when grouping(${tx(d)}) = 0 then coalesce(${tx(d)}, '') end`))})`,
    sets: list(columns.map((d) => tx`(site_id, bucket, ${tx(d)})`)),
  })
  const measures = tx`sum(events)::bigint as events, sum(pageviews)::bigint as pageviews, hll_add_agg(h, ${log2m}, ${regwidth}, ${expthresh}, ${sparseon}) as users`
  const attrs = grouped(ATTRIBUTES)
  await tx`
    create temp table rollup_chunk_dims on commit drop as
    select site_id, bucket, ${attrs.dim} as dim, ${attrs.value} as value, ${measures}
    from rollup_chunk_rows group by grouping sets (${attrs.sets})`
  // Each kept pair [a, b] from the same folded rows, as the dimension a&b=<b's value> with a's values.
  for (const [a, b] of PAIRS) {
    await tx`
      insert into rollup_chunk_dims
      select site_id, bucket, ${pairPrefix([a, b])} || coalesce(${tx(b)}, ''), coalesce(${tx(a)}, ''), ${measures}
      from rollup_chunk_rows group by site_id, bucket, ${tx(a)}, ${tx(b)}`
  }
  const raw = grouped(['path', 'event_type'])
  const rawMeasures = tx`count(*)::bigint as events, (count(*) filter (where event_type = any(${pv})))::bigint as pageviews,
                         hll_add_agg(hll_hash_text(user_id), ${log2m}, ${regwidth}, ${expthresh}, ${sparseon}) as users`
  await tx`
    insert into rollup_chunk_dims
    select site_id, bucket, ${raw.dim}, ${raw.value}, ${rawMeasures}
    from (select site_id collate "C" as site_id, date_trunc('day', ts, 'UTC') as bucket, coalesce(path, '') collate "C" as path, event_type collate "C" as event_type, user_id
          from events where ${rows}) e
    group by grouping sets (${raw.sets})`
  await tx`
    insert into rollup_chunk_dims
    select site_id, date_trunc('day', ts, 'UTC'), ${PROPS_PREFIX} || p.key, p.value, ${rawMeasures}
    from events cross join lateral jsonb_each_text(props) as p(key, value) where ${rows} and props is not null
    group by 1, 2, 3, 4`
}

/** The counted columns of the dimension rollups, beside their visitor sketch. */
const DIM_SUMS = ['events', 'pageviews']

/**
 * Adds the chunk's dimension counts to one granularity, keeping the dimCap values with most
 * events per bucket. rollup_chunk_dims holds one row per (site, day, dimension, value), so
 * the day level takes its rows as they are, and so do month and year when the chunk spans
 * a single day (the usual case in ingestion order): only a chunk over several days merges
 * sketches (sluice_hll_union, by pairs). Only a bucket that got a new value can
 * have gone past the cap (each was within it before), so only those are counted and trimmed.
 */
async function rollupDims(tx: Sql, g: DimGranularity, dimCap: number, oneDay: boolean): Promise<void> {
  const rollup = { table: `rollup_${g}_dims`, other: `rollup_${g}_dim_other`, sums: DIM_SUMS }
  const chunk =
    g === 'day' || oneDay
      ? tx`select site_id, date_trunc(${g}, bucket, 'UTC'), dim, value, events, pageviews, users from rollup_chunk_dims`
      : tx`select site_id, date_trunc(${g}, bucket, 'UTC'), dim, value, sum(events), sum(pageviews), sluice_hll_union(users)
           from rollup_chunk_dims group by 1, 2, 3, 4`
  // xmax = 0 marks a row this statement inserted rather than updated.
  await tx`
    create temp table rollup_chunk_new on commit drop as
    with upserted as (
      insert into ${tx(rollup.table)} as r (site_id, bucket, dim, value, events, pageviews, users) ${chunk}
      on conflict (site_id, dim, bucket, value)
      do update set ${addCounts(tx, DIM_SUMS)}
      returning r.site_id, r.dim, r.bucket, r.xmax = 0 as inserted
    )
    select distinct site_id, dim, bucket from upserted where inserted`
  await foldBeyondCap(tx, rollup, tx`select site_id, dim, bucket from rollup_chunk_new`, 'events', dimCap)
  await tx`drop table rollup_chunk_new`
}
