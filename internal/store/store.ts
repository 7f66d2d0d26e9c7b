import type postgres from 'postgres'
// Package store is Sluice's Postgres access: idempotent bulk inserts of raw events,
// the rollup and retention jobs, and stats over rollups and raw rows. Tagged templates only, so every value is a bound parameter.
import type { Sql } from '../clients/clients.ts'
import type { Event } from '../event/event.ts'
import { listRejects, replayRejects } from './rejects.ts'
import { retention, type RetentionOptions } from './retention.ts'
import { rollup, rollupLag, rollupShards, type RollupOptions } from './rollup.ts'
import { rangeStats, type RangeQuery, type RangeStats } from './stats.ts'
import { type Query, type QueryResult, runQuery } from '../query/query.ts'
import type { RunOptions } from '../query/run.ts'

export { HourlyDetailExpiredError, isDataError } from './errors.ts'

export type Store = ReturnType<typeof createStore>

export function createStore(sql: Sql) {
  /**
   * Inserts events given as a JSON array (as the queue carries them) in one statement and
   * one round trip, as one array per column (unnest): Postgres's json_to_recordset took
   * 13 µs per event with the dimension fields against 3.3 µs without, where reading the
   * arrays takes 7 and 3 (docs/benchmarks.md). An event_id already known (event_ids keeps
   * them for the dedup window) is skipped, so a redelivered batch changes nothing. Returns
   * how many rows were new. JSON that does not parse is a data error (SQLSTATE 22P02), as a
   * value Postgres refuses is: the worker then stores the batch's events one by one.
   */
  async function insertEventsJson(json: string): Promise<number> {
    let events: Record<string, unknown>[]
    try {
      events = JSON.parse(json)
    } catch (err) {
      throw notEvents(`not JSON: ${(err as Error).message}`)
    }
    // The queue holds what the API wrote, but a hand-made or corrupted entry must fail as
    // data (so the worker sets it aside), never as a TypeError retried forever.
    if (!Array.isArray(events) || !events.every((e) => typeof e === 'object' && e !== null && !Array.isArray(e))) throw notEvents('an element is not an object')
    const column = (key: string) => events.map((e) => (e[key] ?? null) as string | number | null)
    const text = (key: string) => {
      const values = column(key)
      if (!values.every((v) => v === null || typeof v === 'string')) throw notEvents(`"${key}" is not a string`)
      return sql`${values}::text[]`
    }
    // Property values are kept as JSON (postgres.js encodes each object); an empty object counts as none.
    const props = events.map((e) => (e.props && typeof e.props === 'object' && Object.keys(e.props).length ? e.props : null))
    const result = await sql`
      with input as (
        select distinct on (event_id) *
        from unnest(${column('event_id')}::uuid[], ${text('site_id')}, ${text('event_type')}, ${text('path')}, ${text('user_id')},
                    ${column('timestamp')}::timestamptz[], ${column('received_at')}::float8[], ${text('referrer')}, ${text('source')}, ${text('channel')},
                    ${text('utm_source')}, ${text('utm_medium')}, ${text('utm_campaign')}, ${text('utm_content')}, ${text('utm_term')},
                    ${text('country')}, ${text('browser')}, ${text('os')}, ${text('device')}, ${props as postgres.SerializableParameter}::jsonb[])
          as t(event_id, site_id, event_type, path, user_id, ts, received_at, referrer, source, channel, utm_source, utm_medium, utm_campaign,
               utm_content, utm_term, country, browser, os, device, props)
      ),
      fresh as (
        insert into event_ids (event_id, site_id) select event_id, site_id from input
        on conflict (event_id) do nothing
        returning event_id
      )
      insert into events (event_id, site_id, event_type, path, user_id, ts, received_at,
                          referrer, source, channel, utm_source, utm_medium, utm_campaign, utm_content, utm_term, country, browser, os, device, props)
      select i.event_id, i.site_id, i.event_type, i.path, i.user_id, i.ts, to_timestamp(i.received_at / 1000),
             i.referrer, i.source, i.channel, i.utm_source, i.utm_medium, i.utm_campaign, i.utm_content, i.utm_term, i.country, i.browser, i.os, i.device, i.props
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
    /** Each rollup shard's watermark and uncounted events. */
    rollupShards: () => rollupShards(sql),
    rollupRejects: (limit?: number) => listRejects(sql, limit),
    replayRejects: (ids: 'all' | string[]) => replayRejects(sql, ids),
    retention: (options?: RetentionOptions) => retention(sql, options),
    ping,
  }
}

/** A batch that is not an array of events: a data error (SQLSTATE 22P02), as a value Postgres refuses is. */
const notEvents = (why: string) => Object.assign(new Error(`a batch of events is not valid: ${why}`), { code: '22P02' })
