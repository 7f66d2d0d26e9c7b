// Package store is Sluice's Postgres access: idempotent bulk inserts of raw events,
// the rollup and retention jobs, and stats over rollups and raw rows. Tagged templates only, so every value is a bound parameter.
import type { Sql } from '../clients/clients.ts'
import type { Event } from '../event/event.ts'
import { retention, type RetentionOptions } from './retention.ts'
import { rollup, type RollupOptions } from './rollup.ts'
import { rangeStats, type RangeQuery, type RangeStats } from './stats.ts'

export type Store = ReturnType<typeof createStore>

export function createStore(sql: Sql) {
  /**
   * Inserts events in one statement and one round trip. An event_id already stored is
   * skipped, so a redelivered batch changes nothing. Returns how many rows were new.
   */
  async function insertEvents(events: Event[]): Promise<number> {
    if (events.length === 0) return 0
    const n = events.length
    const ids = new Array<string>(n)
    const sites = new Array<string>(n)
    const types = new Array<string>(n)
    const paths = new Array<string | null>(n)
    const users = new Array<string | null>(n)
    const stamps = new Array<string>(n)
    const received = new Array<string>(n)
    for (let i = 0; i < n; i++) {
      const e = events[i]!
      ids[i] = e.event_id
      sites[i] = e.site_id
      types[i] = e.event_type
      paths[i] = e.path
      users[i] = e.user_id
      stamps[i] = e.timestamp
      received[i] = new Date(e.received_at).toISOString()
    }
    // event_ids remembers every id for the dedup window; only ids it did not know yet go into events.
    const result = await sql`
      with input as (
        select distinct on (event_id) *
        from unnest(
          ${ids}::uuid[], ${sites}::text[], ${types}::text[], ${paths}::text[],
          ${users}::text[], ${stamps}::timestamptz[], ${received}::timestamptz[]
        ) as t(event_id, site_id, event_type, path, user_id, ts, received_at)
      ),
      fresh as (
        insert into event_ids (event_id) select event_id from input
        on conflict (event_id) do nothing
        returning event_id
      )
      insert into events (event_id, site_id, event_type, path, user_id, ts, received_at)
      select i.event_id, i.site_id, i.event_type, i.path, i.user_id, i.ts, i.received_at
      from input i join fresh f using (event_id)`
    return result.count
  }

  /** Totals, a time series and top paths for one site over any range; see rangeStats. */
  function stats(query: RangeQuery): Promise<RangeStats> {
    return rangeStats(sql, query)
  }

  async function ping(): Promise<void> {
    await sql`select 1`
  }

  return {
    insertEvents,
    stats,
    rollup: (options?: RollupOptions) => rollup(sql, options),
    retention: (options?: RetentionOptions) => retention(sql, options),
    ping,
  }
}

/** SQLSTATE classes that mean "this data can never be stored", as opposed to "try again later". */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && /^(22|23)/.test(code)
}
