// Package store is Sluice's Postgres access: idempotent bulk inserts of events and
// the stats queries. Tagged templates only, so every value is a bound parameter.
import type { Sql } from '../clients/clients.ts'
import type { Event } from '../event/event.ts'

export type StatsQuery = {
  siteId: string
  /** Inclusive start and exclusive end; both null means all time. */
  from: Date | null
  to: Date | null
  eventType?: string | null
  limit?: number
}

export type Stats = {
  total_views: number
  unique_users: number
  top_paths: { path: string; views: number }[]
}

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
    const result = await sql`
      insert into events (event_id, site_id, event_type, path, user_id, ts, received_at)
      select * from unnest(
        ${ids}::uuid[], ${sites}::text[], ${types}::text[], ${paths}::text[],
        ${users}::text[], ${stamps}::timestamptz[], ${received}::timestamptz[]
      )
      on conflict (event_id) do nothing`
    return result.count
  }

  /** Totals and top paths for one site, read from one snapshot. */
  async function stats({ siteId, from, to, eventType = null, limit = 10 }: StatsQuery): Promise<Stats> {
    const range = from && to ? sql`and ts >= ${from} and ts < ${to}` : sql``
    const type = eventType ? sql`and event_type = ${eventType}` : sql``
    return sql.begin('isolation level repeatable read read only', async (tx) => {
      const [totals] = await tx`
        select count(*)::float8 as views, count(distinct user_id)::float8 as users
        from events where site_id = ${siteId} ${range} ${type}`
      const paths = await tx`
        select path, count(*)::float8 as views
        from events where site_id = ${siteId} and path is not null ${range} ${type}
        group by path order by views desc, path limit ${limit}`
      return {
        total_views: totals!.views as number,
        unique_users: totals!.users as number,
        top_paths: paths.map((r) => ({ path: r.path as string, views: r.views as number })),
      }
    })
  }

  async function ping(): Promise<void> {
    await sql`select 1`
  }

  return { insertEvents, stats, ping }
}

/** SQLSTATE classes that mean "this data can never be stored", as opposed to "try again later". */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && /^(22|23)/.test(code)
}
