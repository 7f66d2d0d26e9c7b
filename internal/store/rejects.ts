import type { Sql } from '../clients/clients.ts'

/** A raw event the rollup could not count, with the error Postgres gave. */
export type Reject = { event_id: string; code: string; error: string; set_aside_at: Date; row: Record<string, unknown> }

/**
 * Moves one raw event out of `events` into `rollup_rejects`, in the caller's transaction,
 * so the rollup can go on without it. Nothing is lost: the whole row is kept.
 */
export async function setAside(tx: Sql, xid: string, eventId: string, err: { code?: unknown; message?: unknown }): Promise<void> {
  await tx`
    with moved as (delete from events where xid = ${xid}::xid8 and event_id = ${eventId} returning *)
    insert into rollup_rejects (event_id, row, code, error)
    select event_id, to_jsonb(moved) - 'xid', ${String(err.code ?? 'unknown')}, ${String(err.message ?? err)} from moved
    on conflict (event_id) do update set row = excluded.row, code = excluded.code, error = excluded.error, set_aside_at = now()`
}

/** The events set aside, oldest first. */
export async function listRejects(sql: Sql, limit = 100): Promise<Reject[]> {
  return (await sql`select event_id, code, error, set_aside_at, row from rollup_rejects order by set_aside_at, event_id limit ${limit}`) as unknown as Reject[]
}

/**
 * Puts set-aside events back into `events` (as newly inserted rows, so the next rollup
 * counts them) and removes them from `rollup_rejects`. Returns the ids put back.
 */
export async function replayRejects(sql: Sql, ids: 'all' | string[]): Promise<string[]> {
  // Every column the row was kept with (dimensions and props included, and any added
  // later), but xid and inserted_at, which the new row takes afresh.
  const columns = (
    await sql`
      select attname from pg_attribute
      where attrelid = 'events'::regclass and attnum > 0 and not attisdropped and attname not in ('xid', 'inserted_at')
      order by attnum`
  ).map((c) => c.attname as string)
  // A list of identifiers as a fragment: postgres.js reads sql(array) in an insert as values.
  const list = columns.map((c) => sql`${sql(c)}`).reduce((a, b) => sql`${a}, ${b}`)
  const rows = await sql`
    with taken as (
      delete from rollup_rejects where ${ids === 'all' ? sql`true` : sql`event_id = any(${ids}::uuid[])`} returning row
    )
    insert into events (${list})
    select ${list}
    from taken, jsonb_populate_record(null::events, taken.row) r
    returning event_id`
  return rows.map((r) => r.event_id as string)
}
