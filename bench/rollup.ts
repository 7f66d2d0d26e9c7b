// Benchmark: the rollup job and year-long stats queries. Not a test: it measures and prints.
//   bun run bench:rollup                 # 10M events; about 3 minutes
//   bun run bench:rollup -- --events 1000000 --queries 50
// 1. Roll up EVENTS raw events written the way workers write them (one transaction per
//    2000-event batch), in ingestion order: timestamps advance over one day.
// 2. The worst case: 1M events whose timestamps are spread over a whole year, so nearly
//    every event opens a bucket of its own.
// 3. GET /v1/stats for a year at day and month granularity, and POST /v1/query broken down
//    by source and filtered by country, for one site among 100, on the year-spread data
//    (each site sees its own hundreds of referring sites and paths and 150 countries: see
//    fill), with fresh raw events not yet rolled up on top; and /v1/query's visit metrics
//    by month, visits by entry page, and visitors and visits by visit:source.
// 1b. What visits cost the rollup: VISIT_EVENTS events rolled up with and without visits.
// 1c. What shards buy: VISIT_EVENTS events rolled up with 1 shard and with SHARDS.
// Every run closes the visits it merges (visitCloseAfterMs 0), so closing is measured too.
import { parseArgs } from 'node:util'
import Redis from 'ioredis'
import type { Sql } from '../internal/clients/clients.ts'
import { createApp } from '../internal/http/http.ts'
import { silentLogger } from '../internal/log/log.ts'
import { createQueue } from '../internal/queue/queue.ts'
import { ensurePartitions } from '../internal/store/retention.ts'
import { rollup } from '../internal/store/rollup.ts'
import { createStore } from '../internal/store/store.ts'
import { createTestDatabase } from '../internal/testkit/testkit.ts'
import { record } from './results.ts'

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '10000000' },
    'worst-events': { type: 'string', default: '1000000' },
    queries: { type: 'string', default: '200' },
    'visit-events': { type: 'string', default: '1000000' },
    // ROLLUP_SHARDS's default.
    shards: { type: 'string', default: '2' },
  },
})
const EVENTS = Number(values.events)
const WORST = Number(values['worst-events'])
const QUERIES = Number(values.queries)
const VISIT_EVENTS = Number(values['visit-events'])
const SHARDS = Number(values.shards)
const TXN_ROWS = 2000
const secs = (t: number) => (performance.now() - t) / 1000

/**
 * Writes `total` raw events for 100 sites, 2000 per transaction, timestamps advancing over
 * `spanDays` from `start`. Each site's events are drawn from its own numbering, so every site
 * sees realistic cardinalities: about 3000 visitors coming back in visits of 4 events, 500
 * paths, 300 referring sites (35 % direct), 150 countries, 12 browsers, 8 OS, 3 devices, a
 * newsletter campaign on 20 % of visits, and two custom properties on every tenth event;
 * skewed, so a few values are common and most are rare. A visit's attributes are its own,
 * the same for each of its events.
 */
async function fill(sql: Sql, total: number, spanDays: number, start = '2025-01-01') {
  await sql`create or replace function bench_r(t text) returns float8 language sql immutable as $$ select ((hashtext(t)::bigint & 2147483647) % 1000003) / 1000003.0 $$`
  await sql`
    create or replace procedure bench_fill(total int, per_txn int, span_s bigint, start timestamptz) language plpgsql as $$
    declare done int := 0;
    begin
      while done < total loop
        insert into events (event_id, site_id, event_type, path, user_id, ts, received_at,
                            referrer, source, channel, utm_source, utm_medium, utm_campaign, country, browser, os, device, props)
        select gen_random_uuid(), 'site-' || s, case when k % 10 = 9 then 'click' else 'pageview' end,
               '/p/' || floor(500 * bench_r('p' || g) ^ 2)::int, 'u-' || floor(3000 * bench_r('u' || s || '.' || v))::int,
               start + (g * span_s / total) * interval '1 second', now(),
               case when rr >= 0.35 then 'site' || floor(300 * ((rr - 0.35) / 0.65) ^ 2)::int || '.example' end,
               case when rr < 0.35 then 'Direct / None' else 'site' || floor(300 * ((rr - 0.35) / 0.65) ^ 2)::int || '.example' end,
               case when rr < 0.35 then 'Direct' else 'Referral' end,
               case when ru < 0.2 then 'newsletter' end, case when ru < 0.2 then 'email' end, case when ru < 0.2 then 'launch-' || floor(ru * 100)::int end,
               'C' || floor(150 * rc ^ 3)::int, 'Browser ' || floor(12 * rb ^ 2)::int, 'OS ' || floor(8 * rb)::int,
               (array['Desktop', 'Mobile', 'Tablet'])[1 + floor(3 * rd)::int],
               case when k % 10 = 9 then jsonb_build_object('plan', 'plan-' || (k % 4), 'size', (k % 50)::text) end
        from (
          select g, s, k, v, bench_r('r' || s || '.' || v) as rr, bench_r('m' || s || '.' || v) as ru, bench_r('c' || s || '.' || v) as rc,
                 bench_r('b' || s || '.' || v) as rb, bench_r('d' || s || '.' || v) as rd
          -- g: the event's number; s: its site; k: its number within the site; v: its visit (4 events each)
          from (select g, g % 100 as s, g / 100 as k, g / 400 as v from generate_series((done + 1)::bigint, least(done + per_txn, total)::bigint) g) n
        ) e;
        done := done + per_txn;
        commit;
      end loop;
    end $$`
  await ensurePartitions(sql)
  const t = performance.now()
  await sql`call bench_fill(${total}, ${TXN_ROWS}, ${Math.round(spanDays * 86400)}, ${start})`
  await sql`vacuum analyze events`
  return secs(t)
}

// visitCloseAfterMs 0: every visit is closed and counted in the run that merges it, so closing is measured too.
async function timedRollup(sql: Sql, label: string, visits = true, shards = SHARDS) {
  const t = performance.now()
  const r = await rollup(sql, { visitCloseAfterMs: 0, visits, shards })
  const s = secs(t)
  const rate = Math.round(r.events / s)
  console.log(`${label}: ${r.events.toLocaleString()} events in ${s.toFixed(1)} s = ${rate.toLocaleString()} events/s (${r.chunks} chunks)`)
  return { events: r.events, seconds: +s.toFixed(2), events_per_s: rate }
}

const live = await createTestDatabase()
console.log(`1. ${EVENTS.toLocaleString()} events over one day, in ingestion order: generated in ${(await fill(live.sql, EVENTS, 1)).toFixed(1)} s`)
const inOrder = await timedRollup(live.sql, `   rollup, ${SHARDS} shards`)
await live.drop()

// 1b. What visits cost the rollup: the same events rolled up with and without visits, in rounds A B, B A.
const visitRuns: { visits: boolean; events_per_s: number }[] = []
for (const order of [
  [true, false],
  [false, true],
]) {
  for (const visits of order) {
    const db = await createTestDatabase()
    await fill(db.sql, VISIT_EVENTS, 1)
    const run = await timedRollup(db.sql, `1b. ${VISIT_EVENTS.toLocaleString()} events ${visits ? 'with' : 'without'} visits`, visits)
    visitRuns.push({ visits, events_per_s: run.events_per_s })
    await db.drop()
  }
}
const visitRatios = [0, 1].map((round) => {
  const [a, b] = visitRuns.slice(round * 2, round * 2 + 2)
  const [withV, withoutV] = a!.visits ? [a!, b!] : [b!, a!]
  return withV.events_per_s / withoutV.events_per_s
})
console.log(`   with visits / without, per round: ${visitRatios.map((x) => x.toFixed(2)).join(', ')}`)

// 1c. What shards buy: the same events rolled up with 1 shard and with SHARDS, in rounds A B, B A.
const shardRatios: number[] = []
if (SHARDS > 1 && VISIT_EVENTS > 0) {
  for (const order of [
    [1, SHARDS],
    [SHARDS, 1],
  ]) {
    const rate: Record<number, number> = {}
    for (const shards of order) {
      const db = await createTestDatabase()
      await fill(db.sql, VISIT_EVENTS, 1)
      rate[shards] = (
        await timedRollup(db.sql, `1c. ${VISIT_EVENTS.toLocaleString()} events, ${shards} shard${shards > 1 ? 's' : ''}`, true, shards)
      ).events_per_s
      await db.drop()
    }
    shardRatios.push(rate[SHARDS]! / rate[1]!)
  }
  console.log(`   ${SHARDS} shards / 1, per round: ${shardRatios.map((x) => x.toFixed(2)).join(', ')}`)
}

const year = await createTestDatabase()
console.log(`2. ${WORST.toLocaleString()} events spread over a year: generated in ${(await fill(year.sql, WORST, 365)).toFixed(1)} s`)
const spread = await timedRollup(year.sql, '   rollup')

// What one site sees in a year, on average: the cardinalities the queries below work through.
const [seen] = await year.sql`
  select round(avg(events))::int as events, round(avg(visitors))::int as visitors, round(avg(sources))::int as sources,
         round(avg(paths))::int as paths, round(avg(countries))::int as countries
  from (select site_id, count(*) as events, count(distinct user_id) as visitors, count(distinct source) as sources,
               count(distinct path) as paths, count(distinct country) as countries from events group by site_id) s`
console.log(`   one site in the year, on average: ${JSON.stringify(seen)}`)

// Fresh raw events on top, not rolled up: the queries combine both.
await fill(year.sql, 20_000, 1 / 24, '2025-12-31T12:00:00Z')
const redis = new Redis({ lazyConnect: true })
const app = createApp(
  {
    queue: createQueue(redis, { stream: 'bench:unused', group: 'g', deadLetterStream: 'bench:unused:dead' }),
    store: createStore(year.sql),
    log: silentLogger(),
    checks: {},
  },
  { ingest: { bodyLimitBytes: 1 << 20, batchMax: 1000, maxFutureMs: 300_000 }, statsToken: 'bench' },
)
/** p50, p95 and p99 of QUERIES requests (after 10 to warm up), each for the next of the 100 sites. */
async function latency(request: (site: string) => Request) {
  const times: number[] = []
  for (let i = 0; i < QUERIES + 10; i++) {
    const s = performance.now()
    const res = await app.request(request(`site-${i % 100}`))
    if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`)
    await res.json()
    if (i >= 10) times.push(performance.now() - s) // the first 10 warm up
  }
  times.sort((a, b) => a - b)
  const q = (p: number) => +times[Math.min(times.length - 1, Math.floor(p * times.length))]!.toFixed(2)
  return { p50: q(0.5), p95: q(0.95), p99: q(0.99) }
}
const auth = { authorization: 'Bearer bench' }
const stats = (granularity: string) => (site: string) =>
  new Request(`http://bench/v1/stats?site_id=${site}&from=2025-01-01&to=2026-01-01&granularity=${granularity}`, { headers: auth })
const query = (body: Record<string, unknown>) => (site: string) =>
  new Request('http://bench/v1/query', {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ site_id: site, date_range: ['2025-01-01', '2025-12-31'], ...body }),
  })
const day = await latency(stats('day'))
const month = await latency(stats('month'))
const bySource = await latency(query({ metrics: ['visitors', 'pageviews'], dimensions: ['source'], filters: [['is', 'country', ['C7']]] }))
const visitsByMonth = await latency(query({ metrics: ['visitors', 'visits', 'bounce_rate', 'visit_duration', 'views_per_visit'], dimensions: ['time:month'] }))
const entryPages = await latency(query({ metrics: ['visits', 'bounce_rate', 'visit_duration'], dimensions: ['entry_page'], limit: 10 }))
const visitSources = await latency(query({ metrics: ['visitors', 'visits', 'pageviews'], dimensions: ['visit:source'], limit: 10 }))
console.log(`3. /v1/stats over a year, one site of 100 (${QUERIES} queries each):`)
console.log(`   granularity=day   p50 ${day.p50} ms  p95 ${day.p95} ms  p99 ${day.p99} ms`)
console.log(`   granularity=month p50 ${month.p50} ms  p95 ${month.p95} ms  p99 ${month.p99} ms`)
console.log(`   /v1/query by source where country is C7: p50 ${bySource.p50} ms  p95 ${bySource.p95} ms  p99 ${bySource.p99} ms`)
console.log(`   /v1/query visit metrics by month: p50 ${visitsByMonth.p50} ms  p95 ${visitsByMonth.p95} ms  p99 ${visitsByMonth.p99} ms`)
console.log(`   /v1/query visits by entry page (top 10): p50 ${entryPages.p50} ms  p95 ${entryPages.p95} ms  p99 ${entryPages.p99} ms`)
console.log(`   /v1/query visitors and visits by visit:source (top 10): p50 ${visitSources.p50} ms  p95 ${visitSources.p95} ms  p99 ${visitSources.p99} ms`)

await record('rollup', {
  in_order: inOrder,
  year_spread: spread,
  goal_rollup_events_per_s: 200_000,
  rollup_goal_met: inOrder.events_per_s >= 200_000,
  stats_year_day_ms: day,
  stats_year_month_ms: month,
  goal_stats_p95_ms: 20,
  stats_goal_met: day.p95 < 20 && month.p95 < 20,
  query_year_source_by_country_ms: bySource,
  year_site_cardinalities: seen,
  goal_query_p95_ms: 30,
  query_goal_met: bySource.p95 < 30,
  visits_rollup_ratio: visitRatios,
  shards: SHARDS,
  shards_rollup_ratio: shardRatios,
  query_visits_by_month_ms: visitsByMonth,
  query_entry_pages_ms: entryPages,
  query_visit_sources_ms: visitSources,
  query_visits_goal_met: visitsByMonth.p95 < 30 && entryPages.p95 < 30 && visitSources.p95 < 30,
})
redis.disconnect()
await year.drop()
process.exit(0)
