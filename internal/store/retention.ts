import type { Sql } from '../clients/clients.ts'

export type RetentionOptions = {
  /** Raw events older than this (by ingestion time) are dropped, once counted in the rollups. */
  rawRetentionHours?: number
  /** event_ids are remembered this long; a duplicate arriving later is stored again. */
  dedupWindowHours?: number
  /** How many hourly partitions to make ahead of now. */
  aheadHours?: number
  now?: Date
}

export type RetentionResult = {
  partitionsCreated: number
  partitionsDropped: string[]
  /** Expired partitions kept because some of their rows are not rolled up yet. */
  partitionsKept: string[]
  defaultRowsDeleted: number
  eventIdsDeleted: number
}

const HOUR = 3_600_000

/** Makes the hourly partitions of events from the previous hour to `aheadHours` ahead. */
export async function ensurePartitions(sql: Sql, { aheadHours = 6, now = new Date() }: { aheadHours?: number; now?: Date } = {}): Promise<number> {
  let created = 0
  for (let h = -1; h <= aheadHours; h++) {
    const [row] = await sql`select sluice_ensure_partition(${new Date(now.getTime() + h * HOUR)}) as made`
    if (row!.made) created++
  }
  return created
}

/**
 * Deletes raw data past retention without ever deleting an event the rollups have not
 * counted: whole hourly partitions are dropped (no vacuum, no bloat) only when every row
 * in them lies below the rollup watermark.
 */
export async function retention(sql: Sql, { rawRetentionHours = 24, dedupWindowHours = 48, aheadHours = 6, now = new Date() }: RetentionOptions = {}): Promise<RetentionResult> {
  const cutoff = new Date(now.getTime() - rawRetentionHours * HOUR)
  const result: RetentionResult = { partitionsCreated: 0, partitionsDropped: [], partitionsKept: [], defaultRowsDeleted: 0, eventIdsDeleted: 0 }
  result.partitionsCreated = await ensurePartitions(sql, { aheadHours, now })

  const partitions = await sql`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'events'::regclass and c.relname ~ '^events_p[0-9]{10}$' order by 1`
  for (const { name } of partitions) {
    // Dropping needs a brief exclusive lock on events; never queue inserts behind a long wait.
    const outcome = await sql.begin(async (tx) => {
      await tx`set local lock_timeout = '2s'`
      const [row] = await tx`select sluice_drop_partition_if_rolled(${name}, ${cutoff}) as outcome`
      return row!.outcome as string
    }).catch((err: { code?: string }) => (err.code === '55P03' ? 'kept: lock timeout' : Promise.reject(err)))
    if (outcome === 'dropped') result.partitionsDropped.push(name)
    else if (outcome !== 'kept: not expired') result.partitionsKept.push(name)
  }

  const deleted = await sql`
    delete from events_default
    where inserted_at < ${cutoff} and xid < (select xid_watermark from rollup_state)`
  result.defaultRowsDeleted = deleted.count

  const dedupCutoff = new Date(now.getTime() - Math.max(dedupWindowHours, rawRetentionHours) * HOUR)
  for (;;) {
    const batch = await sql`
      delete from event_ids where ctid = any(array(
        select ctid from event_ids where seen_at < ${dedupCutoff} limit 50000))`
    result.eventIdsDeleted += batch.count
    if (batch.count < 50000) break
  }
  return result
}
