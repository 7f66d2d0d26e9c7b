import type postgres from 'postgres'
import { databaseNow, type Sql } from '../clients/clients.ts'
import { requireWatermarksOfThisCluster } from './rollup.ts'

export type RetentionOptions = {
  /** Raw events older than this (by ingestion time) are dropped, once counted in the rollups. */
  rawRetentionHours?: number
  /** event_ids are remembered this long; a duplicate arriving later is stored again. */
  dedupWindowHours?: number
  /** Hourly rollups are kept this many whole UTC days back from today; 0 keeps them forever. */
  hourRollupDays?: number
  /** How many hourly partitions to make ahead of now. */
  aheadHours?: number
  /** The time the cutoffs are taken from; Postgres's now() when not given (tests give one). */
  now?: Date
}

export type RetentionResult = {
  /** False when another process (a second cron) was running retention: nothing was done. */
  ran: boolean
  partitionsCreated: number
  partitionsDropped: string[]
  /** Expired partitions kept because some of their rows are not rolled up yet. */
  partitionsKept: string[]
  defaultRowsDeleted: number
  eventIdsDeleted: number
  /** Rows of the hourly rollups (totals, paths, visits) older than the hourly retention. */
  hourRollupRowsDeleted: number
}

const HOUR = 3_600_000
const BATCH = 50_000

/**
 * The first hour whose hourly rollups are kept: the start of the UTC day `days` before
 * `now`'s, or null when they are kept forever (days = 0). Stats refuse to read hourly
 * buckets before it (see stats.ts), and retention deletes them.
 */
export function hourlyKeptSince(days: number, now = new Date()): Date | null {
  if (days === 0) return null
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - days))
}

/**
 * The first hour whose hourly detail a query may read: the later of what
 * ROLLUP_HOUR_RETENTION_DAYS keeps now (`configured`, hourlyKeptSince) and what retention
 * deleted under an earlier setting (rollup_state.hour_dropped_before); null for no bound.
 */
export function hourlyDetailFrom(configured: Date | null, dropped: Date | null): Date | null {
  if (configured && dropped) return configured > dropped ? configured : dropped
  return configured ?? dropped
}

/**
 * The first statement of a transaction that reads raw events above a rollup watermark (stats,
 * /v1/query): it holds `events` (every partition) until the transaction ends. Dropping a
 * partition takes effect even for snapshots taken before the drop, unlike a delete: without
 * this, a query that read its watermark before a rollup chunk committed and retention dropped
 * the chunk's partition would find those rows neither in the rollups nor in the raw table.
 * Taken before the snapshot (a LOCK is not a query), so the drop waits for the reader, up to
 * its 2 s lock timeout, and is otherwise left to the next run.
 */
export const keepRawEvents = (tx: Sql) => tx`lock table events in access share mode`

/**
 * Makes the hourly partitions of events from the previous hour to `aheadHours` ahead.
 * Creating a partition locks `events` exclusively, so it waits at most 2 s for a reader
 * (a rollup chunk, a long query) and is otherwise left to the next run, hours before its
 * hour begins: inserts never queue behind it for longer.
 */
export async function ensurePartitions(sql: Sql, { aheadHours = 6, now = new Date() }: { aheadHours?: number; now?: Date } = {}): Promise<number> {
  let created = 0
  for (let h = -1; h <= aheadHours; h++) {
    const made = await withLockTimeout(sql, (tx) => tx`select sluice_ensure_partition(${new Date(now.getTime() + h * HOUR)}) as made`, false)
    if (made) created++
  }
  return created
}

/**
 * The one value a DDL statement on `events` selects, run in a transaction that waits at
 * most 2 s for its exclusive lock; `onTimeout` when it could not get it (55P03), so inserts
 * never queue behind a long reader.
 */
async function withLockTimeout<T>(sql: Sql, statement: (tx: Sql) => postgres.PendingQuery<postgres.Row[]>, onTimeout: T): Promise<T> {
  try {
    return (await sql.begin(async (tx) => {
      await tx`set local lock_timeout = '2s'`
      const [row] = await statement(tx as unknown as Sql)
      return Object.values(row!)[0]
    })) as T
  } catch (err) {
    if ((err as { code?: string }).code === '55P03') return onTimeout
    throw err
  }
}

/** A run's result before (or without) doing anything. */
const nothingDone = (ran: boolean): RetentionResult => ({
  ran,
  partitionsCreated: 0,
  partitionsDropped: [],
  partitionsKept: [],
  defaultRowsDeleted: 0,
  eventIdsDeleted: 0,
  hourRollupRowsDeleted: 0,
})

/** The advisory lock that lets one retention run at a time: two would deadlock on their partition drops. */
const RETENTION_LOCK = 7_360_213_001

/**
 * Deletes raw data past retention without ever deleting an event the rollups have not
 * counted: whole hourly partitions are dropped (no vacuum, no bloat) only when every row
 * in them lies below the rollup watermark. One run at a time across processes: a run that
 * finds another under way does nothing (ran: false); the next one catches up.
 */
export async function retention(sql: Sql, options: RetentionOptions = {}): Promise<RetentionResult> {
  const lock = await sql.reserve()
  try {
    const [row] = await lock`select pg_try_advisory_lock(${RETENTION_LOCK}) as got`
    if (!row!.got) return nothingDone(false)
    try {
      return await retentionRun(sql, options)
    } finally {
      await lock`select pg_advisory_unlock(${RETENTION_LOCK})`
    }
  } finally {
    lock.release()
  }
}

async function retentionRun(
  sql: Sql,
  { rawRetentionHours = 24, dedupWindowHours = 48, hourRollupDays = 90, aheadHours = 6, now: asked }: RetentionOptions,
): Promise<RetentionResult> {
  // A cron host running hours fast would otherwise forget event ids early.
  const now = asked ?? (await databaseNow(sql))
  const cutoff = new Date(now.getTime() - rawRetentionHours * HOUR)
  const result = nothingDone(true)
  result.partitionsCreated = await ensurePartitions(sql, { aheadHours, now })
  // Nothing raw is deleted by a watermark of another cluster: every row would pass as counted.
  await requireWatermarksOfThisCluster(sql)

  const partitions = await sql`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'events'::regclass and c.relname ~ '^events_p[0-9]{10}$' order by 1`
  for (const { name } of partitions) {
    // Dropping needs a brief exclusive lock on events; never queue inserts behind a long wait.
    const outcome = await withLockTimeout(sql, (tx) => tx`select sluice_drop_partition_if_rolled(${name}, ${cutoff}) as outcome`, 'kept: lock timeout')
    if (outcome === 'dropped') result.partitionsDropped.push(name)
    else if (outcome !== 'kept: not expired') result.partitionsKept.push(name)
  }

  // Queries that need raw rows are answered only after the newest instant whose rows may be
  // gone: recorded with the delete, as the partition drop records it with the drop.
  const [deleted] = await sql`
    with gone as (
      delete from events_default
      where inserted_at < ${cutoff} and xid < (select sluice_rollup_low_watermark())
      returning 1
    ),
    recorded as (
      update rollup_state set raw_dropped_before = greatest(raw_dropped_before, ${cutoff}::timestamptz)
      where exists (select 1 from gone)
    )
    select count(*)::int as n from gone`
  result.defaultRowsDeleted = deleted!.n as number

  const dedupCutoff = new Date(now.getTime() - Math.max(dedupWindowHours, rawRetentionHours) * HOUR)
  result.eventIdsDeleted = await deleteInBatches(sql, 'event_ids', sql`seen_at < ${dedupCutoff}`)

  // Day, month and year rollups hold the same counts; only hourly detail goes.
  const hourly = hourlyKeptSince(hourRollupDays, now)
  if (hourly) {
    // Recorded before the deletes, and only when there is something to delete: the API then
    // refuses hourly detail before it even if ROLLUP_HOUR_RETENTION_DAYS is raised later.
    await sql`
      update rollup_state set hour_dropped_before = greatest(hour_dropped_before, ${hourly}::timestamptz)
      where exists (select 1 from rollup_hour where bucket < ${hourly}) or exists (select 1 from rollup_hour_paths where bucket < ${hourly})
         or exists (select 1 from rollup_hour_visits where bucket < ${hourly}) or exists (select 1 from rollup_hour_visit_other where bucket < ${hourly})`
    for (const table of ['rollup_hour', 'rollup_hour_paths', 'rollup_hour_visits', 'rollup_hour_visit_other']) {
      result.hourRollupRowsDeleted += await deleteInBatches(sql, table, sql`bucket < ${hourly}`)
    }
  }
  return result
}

/** Deletes the rows of `table` matching `where` in batches, so no one statement holds locks for long. */
async function deleteInBatches(sql: Sql, table: string, where: ReturnType<Sql>): Promise<number> {
  let total = 0
  for (;;) {
    const batch = await sql`delete from ${sql(table)} where ctid = any(array(select ctid from ${sql(table)} where ${where} limit ${BATCH}))`
    total += batch.count
    if (batch.count < BATCH) return total
  }
}
