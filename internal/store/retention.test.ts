import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { createTestDatabase, eventually, type TestDatabase } from '../testkit/testkit.ts'
import { parseQuery, runQuery } from '../query/query.ts'
import { ensurePartitions, hourlyKeptSince, keepRawEvents, retention } from './retention.ts'
import { rollup } from './rollup.ts'
import { createStore, HourlyDetailExpiredError, type Store } from './store.ts'

let db: TestDatabase
let store: Store
beforeEach(async () => {
  db = await createTestDatabase()
  store = createStore(db.sql)
})
afterEach(() => db.drop())

const HOUR = 3_600_000
const now = new Date()
const hoursAgo = (h: number) => new Date(now.getTime() - h * HOUR)

/** Inserts a raw event as if it had been ingested `h` hours ago. */
async function ingestedHoursAgo(h: number, o: { user?: string; path?: string; ts?: string } = {}) {
  await db.sql`select sluice_ensure_partition(${hoursAgo(h)})`
  const id = crypto.randomUUID()
  await db.sql`insert into event_ids (event_id, seen_at) values (${id}, ${hoursAgo(h)})`
  await db.sql`
    insert into events (event_id, site_id, event_type, path, user_id, ts, received_at, inserted_at)
    values (${id}, 'ret', 'pageview', ${o.path ?? '/'}, ${o.user ?? 'u'}, ${o.ts ?? '2025-11-14T10:00:00Z'}, ${hoursAgo(h)}, ${hoursAgo(h)})`
}
const partitions = async () =>
  (
    await db.sql`select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'events'::regclass and c.relname <> 'events_default' order by 1`
  ).map((r) => r.relname as string)
const rawCount = async () => (await db.sql`select count(*)::int as n from events`)[0]!.n as number
const statsNow = () => store.stats({ siteId: 'ret', from: new Date('2025-11-01T00:00:00Z'), to: new Date('2025-12-01T00:00:00Z'), granularity: 'day' })

describe('retention', () => {
  test('makes hourly partitions ahead of time, once', async () => {
    const made = await ensurePartitions(db.sql, { aheadHours: 3, now: new Date('2030-01-01T10:30:00Z') })
    expect(made).toBe(5)
    expect(await ensurePartitions(db.sql, { aheadHours: 3, now: new Date('2030-01-01T10:30:00Z') })).toBe(0)
    expect((await partitions()).filter((p) => p.startsWith('events_p20300101'))).toEqual([
      'events_p2030010109',
      'events_p2030010110',
      'events_p2030010111',
      'events_p2030010112',
      'events_p2030010113',
    ])
  })

  test('leaves a partition for the next run when a reader holds events, instead of holding every insert behind it', async () => {
    const reader = await db.sql.reserve()
    try {
      await reader`begin`
      await reader`select count(*) from events`
      // Two lock waits of 2 s each, then none made; without the timeout this would wait for the reader forever.
      expect(await ensurePartitions(db.sql, { aheadHours: 0, now: new Date('2031-01-01T10:30:00Z') })).toBe(0)
      await reader`commit`
    } finally {
      reader.release()
    }
    expect(await ensurePartitions(db.sql, { aheadHours: 0, now: new Date('2031-01-01T10:30:00Z') })).toBe(2)
  }, 30_000)

  test('retention runs at once (cron replicas) never deadlock: one does the work, the others skip, and each expired partition is dropped once', async () => {
    for (let h = 30; h < 50; h++) await ingestedHoursAgo(h)
    expect(await eventually(async () => (await rollup(db.sql)).ran && (await store.rollupLag()).unrolled === 0)).toBe(true)
    const runs = await Promise.all([retention(db.sql, { now }), retention(db.sql, { now }), retention(db.sql, { now })])
    expect(runs.filter((r) => r.ran).length).toBeGreaterThanOrEqual(1)
    for (const r of runs) if (!r.ran) expect(r.partitionsDropped).toEqual([])
    // What a run skipped, the next one does; every expired partition is dropped once.
    const next = await retention(db.sql, { now })
    const dropped = [...runs, next].flatMap((r) => r.partitionsDropped)
    expect(dropped).toHaveLength(20)
    expect(new Set(dropped).size).toBe(20)
  })

  test('reads a partition name as its UTC hour whatever the session TimeZone: east of UTC nothing is dropped early, nor recorded as gone', async () => {
    await ingestedHoursAgo(10)
    await rollup(db.sql)
    const name = `events_p${hoursAgo(10).toISOString().slice(0, 13).replace(/[-T]/g, '')}`
    expect(await partitions()).toContain(name)
    const dropIn = (zone: string, cutoff: Date) =>
      db.sql.begin(async (tx) => {
        await tx`select set_config('TimeZone', ${zone}, true)`
        return (await tx`select sluice_drop_partition_if_rolled(${name}, ${cutoff}) as outcome`)[0]!.outcome as string
      })
    // The partition's hour ended 9 hours ago: with a cutoff 12 hours ago it stays, in any zone
    // (read in Tokyo's, its end fell 9 hours earlier, before the cutoff).
    for (const zone of ['Asia/Tokyo', 'Pacific/Kiritimati', 'UTC', 'America/Los_Angeles']) {
      expect({ zone, outcome: await dropIn(zone, hoursAgo(12)) }).toEqual({ zone, outcome: 'kept: not expired' })
    }
    expect((await db.sql`select raw_dropped_before from rollup_state`)[0]!.raw_dropped_before).toBeNull()
    // Past the cutoff it is dropped, and what is recorded gone ends with its hour.
    expect(await dropIn('Asia/Tokyo', hoursAgo(6))).toBe('dropped')
    const end = Date.UTC(+name.slice(8, 12), +name.slice(12, 14) - 1, +name.slice(14, 16), +name.slice(16, 18) + 1)
    expect(((await db.sql`select raw_dropped_before from rollup_state`)[0]!.raw_dropped_before as Date).getTime()).toBe(end)
  })

  test('drops expired partitions once rolled up, and the stats stay the same', async () => {
    await ingestedHoursAgo(30, { user: 'a', path: '/old' })
    await ingestedHoursAgo(26, { user: 'b' })
    await ingestedHoursAgo(1, { user: 'a' })
    await rollup(db.sql)
    const before = await statsNow()
    const result = await retention(db.sql, { rawRetentionHours: 24, now })
    expect(result.partitionsDropped).toHaveLength(2)
    expect(result.partitionsKept).toEqual([])
    // Raw queries learn, with the drop itself, which hours are gone: up to the end of the newest dropped one.
    const newest = [...result.partitionsDropped].sort().at(-1)!
    const end = Date.UTC(+newest.slice(8, 12), +newest.slice(12, 14) - 1, +newest.slice(14, 16), +newest.slice(16, 18) + 1)
    expect(((await db.sql`select raw_dropped_before from rollup_state`)[0]!.raw_dropped_before as Date).getTime()).toBe(end)
    expect(await rawCount()).toBe(1)
    expect(await statsNow()).toEqual(before)
    expect(before).toMatchObject({
      total_views: 3,
      unique_users: 2,
      top_paths: [
        { path: '/', views: 2 },
        { path: '/old', views: 1 },
      ],
    })
  })

  test('keeps a partition while a reader of raw events holds its snapshot, so the reader still finds its rows', async () => {
    await ingestedHoursAgo(30)
    await ensurePartitions(db.sql, { now }) // made before: making one waits for readers too
    const seen = await db.sql.begin('isolation level repeatable read read only', async (tx) => {
      await keepRawEvents(tx as unknown as typeof db.sql)
      const [{ watermark }] = (await tx`select xid_watermark::text as watermark from rollup_shards limit 1`) as unknown as [{ watermark: string }]
      // Meanwhile the rollup counts the row and retention would drop its partition.
      await rollup(db.sql)
      const result = await retention(db.sql, { rawRetentionHours: 24, now })
      expect(result.partitionsDropped).toEqual([])
      expect(result.partitionsKept).toHaveLength(1)
      return (await tx`select count(*)::int as n from events where xid >= ${watermark}::xid8`)[0]!.n as number
    })
    expect(seen).toBe(1)
    expect((await retention(db.sql, { rawRetentionHours: 24, now })).partitionsDropped).toHaveLength(1)
  }, 20_000)

  test('the rollup and retention stop, and delete nothing, while a watermark is ahead of the cluster (a restore into another cluster)', async () => {
    await ingestedHoursAgo(30)
    await db.sql`update rollup_shards set xid_watermark = (pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000)::text::xid8`
    await expect(rollup(db.sql)).rejects.toThrow('restored into another cluster')
    await expect(retention(db.sql, { rawRetentionHours: 24, now })).rejects.toThrow('restored into another cluster')
    expect(await rawCount()).toBe(1)
    // A raw row restored with its old id is caught too, with the watermarks reset but the rows not.
    await db.sql`update rollup_shards set xid_watermark = pg_snapshot_xmin(pg_current_snapshot())`
    await db.sql`update events set xid = (pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000)::text::xid8`
    await expect(rollup(db.sql)).rejects.toThrow('restored into another cluster')
    // The documented reset: the rows marked counted, the watermarks moved; then it runs.
    await db.sql.begin(async (tx) => {
      await tx`update events set xid = '1'::xid8`
      await tx`update rollup_shards set xid_watermark = pg_snapshot_xmin(pg_current_snapshot())`
    })
    expect(await rollup(db.sql)).toMatchObject({ events: 0 })
  })

  test('never drops a partition holding events the rollups have not counted', async () => {
    await ingestedHoursAgo(30)
    await rollup(db.sql)
    await ingestedHoursAgo(29) // arrives after the rollup ran
    const result = await retention(db.sql, { rawRetentionHours: 24, now })
    expect(result.partitionsDropped).toHaveLength(1)
    expect(result.partitionsKept).toHaveLength(1)
    expect(await rawCount()).toBe(1)
    expect((await statsNow()).total_views).toBe(2)
    await rollup(db.sql)
    expect((await retention(db.sql, { rawRetentionHours: 24, now })).partitionsDropped).toHaveLength(1)
    expect((await statsNow()).total_views).toBe(2)
  })

  test('deletes rows left in the default partition only once they are rolled up and expired', async () => {
    // No partition for that hour: the row lands in events_default.
    await db.sql`insert into events (event_id, site_id, event_type, ts, received_at, inserted_at)
                 values (${crypto.randomUUID()}, 'ret', 'pageview', '2025-11-14T10:00:00Z', now(), ${new Date('2001-01-01T00:00:00Z')})`
    expect((await retention(db.sql, { now })).defaultRowsDeleted).toBe(0)
    expect((await db.sql`select raw_dropped_before from rollup_state`)[0]!.raw_dropped_before).toBeNull()
    await rollup(db.sql)
    expect((await retention(db.sql, { now })).defaultRowsDeleted).toBe(1)
    expect(((await db.sql`select raw_dropped_before from rollup_state`)[0]!.raw_dropped_before as Date).getTime()).toBe(now.getTime() - 24 * 3_600_000)
    expect((await statsNow()).total_views).toBe(1)
  })

  test('forgets event ids after the dedup window, not before', async () => {
    await ingestedHoursAgo(50)
    await ingestedHoursAgo(10)
    await rollup(db.sql)
    const result = await retention(db.sql, { rawRetentionHours: 24, dedupWindowHours: 48, now })
    expect(result.eventIdsDeleted).toBe(1)
    expect((await db.sql`select count(*)::int as n from event_ids`)[0]!.n).toBe(1)
  })

  test('deletes hourly rollups past their retention, and day, month and year answers stay the same', async () => {
    const today = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()))
    const daysAgo = (d: number, hour = 10) => new Date(today.getTime() - d * 24 * HOUR + hour * HOUR).toISOString()
    for (const [d, user, path] of [
      [40, 'a', '/x'],
      [40, 'b', '/y'],
      [35, 'a', '/x'],
      [3, 'c', '/x'],
      [0, 'a', '/z'],
    ] as const) {
      await ingestedHoursAgo(1, { ts: daysAgo(d), user, path })
    }
    await rollup(db.sql)
    const daily = () => store.stats({ siteId: 'ret', from: new Date(daysAgo(60, 0)), to: new Date(daysAgo(-1, 0)), granularity: 'day' })
    const all = () => store.stats({ siteId: 'ret', from: null, to: null, granularity: null })
    const before = { daily: await daily(), all: await all() }
    const hourRows = async () => (await db.sql`select count(*)::int as n from rollup_hour`)[0]!.n as number

    const result = await retention(db.sql, { hourRollupDays: 30, now })
    // two old hours, in rollup_hour, rollup_hour_paths (/x, /y, /x) and rollup_hour_visits (their visits closed: received an hour ago)
    expect(result.hourRollupRowsDeleted).toBe(2 + 3 + 2)
    expect(await hourRows()).toBe(2)
    expect(await daily()).toEqual(before.daily)
    expect(await all()).toEqual(before.all)
    expect(before.all).toMatchObject({ total_views: 5, unique_users: 3 })
    const months = await store.stats({
      siteId: 'ret',
      from: new Date(Date.UTC(now.getUTCFullYear() - 1, 0, 1)),
      to: new Date(Date.UTC(now.getUTCFullYear() + 1, 0, 1)),
      granularity: 'month',
    })
    expect(months.total_views).toBe(5)

    // Hourly detail inside the retention still answers; before it, the range is refused by name.
    const hourlyFrom = hourlyKeptSince(30, now)
    const recent = await store.stats({ siteId: 'ret', from: new Date(daysAgo(3, 0)), to: new Date(daysAgo(2, 0)), granularity: 'hour', hourlyFrom })
    expect(recent.series.find((b) => b.views > 0)).toEqual({ bucket: daysAgo(3), views: 1, unique_users: 1 })
    const old = store.stats({ siteId: 'ret', from: new Date(daysAgo(40, 0)), to: new Date(daysAgo(39, 0)), granularity: 'hour', hourlyFrom })
    await expect(old).rejects.toBeInstanceOf(HourlyDetailExpiredError)
    await expect(
      store.stats({ siteId: 'ret', from: new Date(daysAgo(40, 6)), to: new Date(daysAgo(39, 0)), granularity: null, hourlyFrom }),
    ).rejects.toMatchObject({ code: 'hourly_detail_expired' })
    expect(
      (await store.stats({ siteId: 'ret', from: new Date(daysAgo(40, 0)), to: new Date(daysAgo(39, 0)), granularity: 'day', hourlyFrom })).total_views,
    ).toBe(2)
  })

  test('hours it deleted stay refused after ROLLUP_HOUR_RETENTION_DAYS is raised or set to 0, by /v1/stats and /v1/query alike, never read as zero', async () => {
    const today = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()))
    const noonDaysAgo = (d: number) => new Date(today.getTime() - d * 24 * HOUR + 12 * HOUR).toISOString()
    await ingestedHoursAgo(1, { ts: noonDaysAgo(200) })
    await rollup(db.sql)
    const state = async () => (await db.sql`select hour_dropped_before from rollup_state`)[0]!.hour_dropped_before as Date | null
    expect((await retention(db.sql, { hourRollupDays: 90, now })).hourRollupRowsDeleted).toBeGreaterThan(0)
    expect(await state()).toEqual(hourlyKeptSince(90, now))
    // A second run, with nothing older left, records nothing new.
    await retention(db.sql, { hourRollupDays: 30, now })
    expect(await state()).toEqual(hourlyKeptSince(90, now))
    // The setting raised to a year, then to forever: the deleted hours are still refused by name.
    const day = { from: new Date(noonDaysAgo(200).slice(0, 10)), to: new Date(new Date(noonDaysAgo(200).slice(0, 10)).getTime() + 24 * HOUR) }
    for (const hourlyFrom of [hourlyKeptSince(365, now), null]) {
      await expect(store.stats({ siteId: 'ret', ...day, granularity: 'hour', hourlyFrom })).rejects.toBeInstanceOf(HourlyDetailExpiredError)
      expect((await store.stats({ siteId: 'ret', ...day, granularity: 'day', hourlyFrom })).total_views).toBe(1)
      const date = day.from.toISOString().slice(0, 10)
      const byHour = parseQuery({ site_id: 'ret', date_range: [date, date], metrics: ['pageviews'], dimensions: ['time:hour'] })
      if (!byHour.ok) throw new Error(JSON.stringify(byHour.problems))
      await expect(runQuery(db.sql, byHour.query, { hourlyFrom })).rejects.toMatchObject({ code: 'hourly_detail_expired' })
    }
  })

  test('keeps hourly rollups forever when their retention is 0', async () => {
    await ingestedHoursAgo(1, { ts: '2001-01-01T10:00:00Z' })
    await rollup(db.sql)
    expect((await retention(db.sql, { hourRollupDays: 0, now })).hourRollupRowsDeleted).toBe(0)
    expect(hourlyKeptSince(0, now)).toBeNull()
  })
})
