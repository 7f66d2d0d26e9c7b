// Package store is Sluice's Postgres access: idempotent bulk inserts of raw events,
// the rollup and retention jobs, and stats over rollups and raw rows. Tagged templates only, so every value is a bound parameter.
import type { Sql } from '../clients/clients.ts'
import type { Event } from '../event/event.ts'
import { listRejects, replayRejects } from './rejects.ts'
import { retention, type RetentionOptions } from './retention.ts'
import { rollup, rollupLag, type RollupOptions } from './rollup.ts'
import { rangeStats, type RangeQuery, type RangeStats } from './stats.ts'
import { type Query, type QueryResult, runQuery } from '../query/query.ts'
import type { RunOptions } from '../query/run.ts'

export { HourlyDetailExpiredError, isDataError } from './errors.ts'

export type Store = ReturnType<typeof createStore>

export function createStore(sql: Sql) {
  /**
   * Inserts events given as a JSON array (as the queue carries them) in one statement and
   * one round trip; Postgres parses the JSON. An event_id already known (event_ids keeps
   * them for the dedup window) is skipped, so a redelivered batch changes nothing.
   * Returns how many rows were new.
   */
  async function insertEventsJson(json: string): Promise<number> {
    const result = await sql`
      with input as (
        select distinct on (event_id) *
        from json_to_recordset(${json}::text::json) as t(
          event_id uuid, site_id text, event_type text, path text, user_id text, "timestamp" timestamptz, received_at float8,
          referrer text, source text, channel text, utm_source text, utm_medium text, utm_campaign text, utm_content text, utm_term text,
          country text, browser text, os text, device text, props jsonb
        )
      ),
      fresh as (
        insert into event_ids (event_id, site_id) select event_id, site_id from input
        on conflict (event_id) do nothing
        returning event_id
      )
      insert into events (event_id, site_id, event_type, path, user_id, ts, received_at,
                          referrer, source, channel, utm_source, utm_medium, utm_campaign, utm_content, utm_term, country, browser, os, device, props)
      select i.event_id, i.site_id, i.event_type, i.path, i.user_id, i."timestamp", to_timestamp(i.received_at / 1000),
             i.referrer, i.source, i.channel, i.utm_source, i.utm_medium, i.utm_campaign, i.utm_content, i.utm_term, i.country, i.browser, i.os, i.device,
             nullif(i.props, '{}'::jsonb)
      from input i join fresh f using (event_id)`
    return result.count
  }

  /** insertEventsJson for events in hand. */
  const insertEvents = (events: Event[]): Promise<number> => (events.length ? insertEventsJson(JSON.stringify(events)) : Promise.resolve(0))

  /** Totals, a time series and top paths for one site over any range; see rangeStats. */
  function stats(query: RangeQuery): Promise<RangeStats> {
    return rangeStats(sql, query)
  }

  async function ping(): Promise<void> {
    await sql`select 1`
  }

  return {
    insertEvents,
    insertEventsJson,
    stats,
    /** POST /v1/query's answer; see internal/query. */
    query: (q: Query, options?: RunOptions): Promise<QueryResult> => runQuery(sql, q, options),
    rollup: (options?: RollupOptions) => rollup(sql, options),
    rollupLag: () => rollupLag(sql),
    rollupRejects: (limit?: number) => listRejects(sql, limit),
    replayRejects: (ids: 'all' | string[]) => replayRejects(sql, ids),
    retention: (options?: RetentionOptions) => retention(sql, options),
    ping,
  }
}
