import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Event } from '../event/event.ts'
import { createTestDatabase, type TestDatabase } from '../testkit/testkit.ts'
import { listMigrations, migrate } from './migrate.ts'
import { createStore, isDataError } from './store.ts'

let db: TestDatabase
beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(() => db.drop())

const event = (n: number, o: Partial<Event> = {}): Event => ({
  event_id: `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`,
  site_id: 'store-site',
  event_type: 'pageview',
  path: '/',
  user_id: 'u',
  timestamp: '2025-11-14T10:00:00.000Z',
  received_at: Date.parse('2025-11-14T10:00:01Z'),
  ...o,
})

describe('migrations', () => {
  test('applying them again changes nothing', async () => {
    expect(await migrate(db.sql)).toEqual([])
    const rows = await db.sql`select version from schema_migrations order by version`
    expect(rows.map((r) => r.version)).toEqual((await listMigrations()).map((m) => m.version))
  })

  test('concurrent runs take turns and apply each migration once', async () => {
    const results = await Promise.all([migrate(db.sql), migrate(db.sql), migrate(db.sql)])
    expect(results.flat()).toEqual([])
  })

  test('0016 marks from when visitors by source are kept on an install that had counted visits, and not on a new one', async () => {
    const own = await createTestDatabase()
    try {
      expect((await own.sql`select visit_sketches_since from rollup_state`)[0]!.visit_sketches_since).toBeNull()
      // The same install as it stood before 0016, with one day of visits counted.
      await own.sql`alter table rollup_state drop column visit_sketches_since`
      await own.sql`delete from schema_migrations where version = 16`
      await own.sql`insert into rollup_day_visits values ('s', '2025-03-01', 'source', 'Google', 1, 1, 0, 1, 1, hll_empty())`
      const [before] = await own.sql`select now() as t`
      expect(await migrate(own.sql)).toEqual(['0016_visit_source_sketches.sql'])
      const [after] = await own.sql`select now() as t, visit_sketches_since as since from rollup_state`
      expect(after!.since >= before!.t && after!.since <= after!.t).toBe(true)
    } finally {
      await own.drop()
    }
  })
})

describe('insertEvents', () => {
  test('stores every field of every event in one statement', async () => {
    const store = createStore(db.sql)
    expect(await store.insertEvents([event(1), event(2, { path: null, user_id: null, site_id: 'b', event_type: 'click' })])).toBe(2)
    const rows =
      await db.sql`select event_id, site_id, event_type, path, user_id, ts, received_at from events where event_id in (${event(1).event_id}, ${event(2).event_id}) order by event_id`
    expect(rows.map((r) => ({ ...r }))).toEqual([
      {
        event_id: event(1).event_id,
        site_id: 'store-site',
        event_type: 'pageview',
        path: '/',
        user_id: 'u',
        ts: new Date('2025-11-14T10:00:00Z'),
        received_at: new Date('2025-11-14T10:00:01Z'),
      },
      {
        event_id: event(2).event_id,
        site_id: 'b',
        event_type: 'click',
        path: null,
        user_id: null,
        ts: new Date('2025-11-14T10:00:00Z'),
        received_at: new Date('2025-11-14T10:00:01Z'),
      },
    ])
  })

  test('stores an event delivered twice once, in one batch or across batches', async () => {
    const store = createStore(db.sql)
    expect(await store.insertEvents([event(10), event(10), event(11)])).toBe(2)
    expect(await store.insertEvents([event(10), event(11)])).toBe(0)
    const [{ n }] = (await db.sql`select count(*)::int as n from events where event_id in (${event(10).event_id}, ${event(11).event_id})`) as unknown as [
      { n: number },
    ]
    expect(n).toBe(2)
  })

  test('stores SQL in string fields literally', async () => {
    const store = createStore(db.sql)
    const nasty = "'); drop table events; --"
    await store.insertEvents([event(20, { site_id: 'sqli', path: nasty, user_id: nasty, event_type: nasty })])
    const stats = await store.stats({ siteId: 'sqli', from: null, to: null, granularity: null, eventType: nasty })
    expect(stats).toMatchObject({ total_views: 1, unique_users: 1, top_paths: [{ path: nasty, views: 1 }] })
  })

  test('stores text that array literals would mangle, and properties, exactly as sent', async () => {
    const texts = ['NULL', 'null', '', ' a ', 'a,b', '{x}', '"q"', 'back\\slash', "it's", '𝄞 ünï', 'tab\there', 'new\nline']
    const events = texts.map((t, i) => event(2000 + i, { path: `/${t}`, user_id: t || undefined, referrer: t, props: { k: t, n: String(i) } }))
    expect(await createStore(db.sql).insertEvents(events)).toBe(texts.length)
    const rows = await db.sql`select path, user_id, referrer, props from events where event_id = any(${events.map((e) => e.event_id)}::uuid[])`
    const byPath = new Map(rows.map((r) => [r.path as string, { ...r }]))
    for (const e of events) expect(byPath.get(e.path!)).toEqual({ path: e.path, user_id: e.user_id ?? null, referrer: e.referrer, props: e.props })
  })

  test('a batch that is not JSON is a data error, so the worker stores its events one by one', async () => {
    const err = await createStore(db.sql)
      .insertEventsJson('[{"event_id": ')
      .catch((e: unknown) => e)
    expect(isDataError(err)).toBe(true)
  })

  test('fails with a data error, not a connection error, when Postgres rejects a value', async () => {
    const store = createStore(db.sql)
    const err = await store.insertEvents([event(30, { path: 'NUL \u0000 byte' })]).catch((e) => e)
    expect(isDataError(err)).toBe(true)
  })
})
