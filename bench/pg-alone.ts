// Postgres alone, as the drain's reference: the worker's own statement (store.insertEventsJson,
// 2000 events a statement, two at once on their own connections) from a process of its own,
// as the worker is, so neither pays for the other's heap. With --plain, the same form without
// the event_ids check: what exactly-once costs. Prints one JSON line.
//   bun bench/pg-alone.ts DATABASE_URL EVENTS [--plain]
import { createSql } from '../internal/clients/clients.ts'
import { createStore } from '../internal/store/store.ts'

const [url, count, mode] = process.argv.slice(2)
const EVENTS = Number(count)
const BATCH = 2000
const sql = createSql(url!, { max: 2 })
const store = createStore(sql)
const timestamp = new Date().toISOString()
// The drain's events (bench/drain.ts plainBatch): 20 sites, 100 paths, a user each, and
// time-ordered (v7) ids, as the API gives them to the drain's events.
const batches = Array.from({ length: Math.ceil(EVENTS / BATCH) }, (_, b) =>
  JSON.stringify(
    Array.from({ length: BATCH }, (_, i) => ({
      event_id: Bun.randomUUIDv7(),
      site_id: `drain-${i % 20}`,
      event_type: 'pageview',
      path: `/p/${i % 100}`,
      user_id: `u-${b}-${i}`,
      timestamp,
      received_at: Date.now(),
    })),
  ),
)
// The worker's form (one array per column) without the event_ids check.
const plain = (json: string) => {
  const events = JSON.parse(json) as Record<string, string | number>[]
  const column = (key: string) => events.map((e) => e[key]!)
  return sql`
    insert into events (event_id, site_id, event_type, path, user_id, ts, received_at)
    select event_id, site_id, event_type, path, user_id, ts, to_timestamp(received_at / 1000)
    from unnest(${column('event_id')}::uuid[], ${column('site_id')}::text[], ${column('event_type')}::text[], ${column('path')}::text[],
                ${column('user_id')}::text[], ${column('timestamp')}::timestamptz[], ${column('received_at')}::float8[])
      as t(event_id, site_id, event_type, path, user_id, ts, received_at)`
}
await sql`select 1`
const started = performance.now()
let next = 0
const lane = async () => {
  while (next < batches.length) {
    const json = batches[next++]!
    await (mode === '--plain' ? plain(json) : store.insertEventsJson(json))
  }
}
await Promise.all([lane(), lane()])
const seconds = (performance.now() - started) / 1000
const events = batches.length * BATCH
console.log(JSON.stringify({ events, seconds: +seconds.toFixed(2), eventsPerS: Math.round(events / seconds) }))
await sql.end({ timeout: 1 })
