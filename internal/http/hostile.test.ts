import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import type { Event } from '../event/event.ts'
import { silentLogger } from '../log/log.ts'
import { createQueue } from '../queue/queue.ts'
import { DATE_RANGES, METRICS, OPERATORS } from '../query/query.ts'
import { createRegistry } from '../sites/registry.ts'
import { createSites } from '../sites/sites.ts'
import { DIMENSIONS, VISIT_ONLY_DIMENSIONS } from '../store/dimensions.ts'
import { GRANULARITIES } from '../store/buckets.ts'
import { createStore } from '../store/store.ts'
import { createTestDatabase, createTestRedis, type TestDatabase, type TestRedis } from '../testkit/testkit.ts'
import { createApp } from './http.ts'

// Hostile and malformed requests: each gets a specific 4xx with a JSON body naming the
// problem; nothing gets a 5xx; nothing crashes; nothing invalid reaches the queue.

let db: TestDatabase
let r: TestRedis
let app: ReturnType<typeof createApp>
const TOKEN = 'hostile-token'
const LIMIT = 16 * 1024

beforeAll(async () => {
  ;[db, r] = await Promise.all([createTestDatabase(), createTestRedis()])
  app = createApp(
    { queue: createQueue(r.redis, r.queue), store: createStore(db.sql), log: silentLogger(), checks: {} },
    { ingest: { bodyLimitBytes: LIMIT, batchMax: 1000, maxFutureMs: 300_000 }, statsToken: TOKEN },
  )
})
afterAll(async () => {
  await r.cleanup()
  await db.drop()
})

const ok = { site_id: 'site-abc-123', event_type: 'pageview', timestamp: '2025-11-14T10:00:00Z' }
const json = (v: unknown) => JSON.stringify(v)
const bytes = (...parts: (string | number[])[]) => new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...new TextEncoder().encode(p)] : p)))

type Case = [name: string, method: string, path: string, body: string | Uint8Array | null, type: string | null, status: number, code: string, field: string]
type Row = [string, string, string, string | Uint8Array | null, string | null, number, string, string?]

const rows: Row[] = [
  // Bodies that are not JSON, or not text.
  ['invalid JSON', 'POST', '/event', '{"site_id":', 'application/json', 400, 'invalid_json'],
  ['JSON with a trailing comma', 'POST', '/event', '{"site_id":"a",}', 'application/json', 400, 'invalid_json'],
  ['single-quoted JSON', 'POST', '/event', "{'site_id':'a'}", 'application/json', 400, 'invalid_json'],
  ['an empty body', 'POST', '/event', '', 'application/json', 400, 'empty_body'],
  ['a whitespace-only body', 'POST', '/event', '  \n ', 'application/json', 400, 'empty_body'],
  ['invalid UTF-8', 'POST', '/event', bytes('{"site_id":"', [0xc3, 0x28], '"}'), 'application/json', 400, 'invalid_utf8'],
  ['an overlong UTF-8 encoding', 'POST', '/event', bytes('{"path":"', [0xc0, 0xaf], '"}'), 'application/json', 400, 'invalid_utf8'],
  ['a UTF-8 encoded surrogate', 'POST', '/event', bytes('{"path":"', [0xed, 0xa0, 0x80], '"}'), 'application/json', 400, 'invalid_utf8'],
  ['deeply nested JSON', 'POST', '/event', `${'['.repeat(6000)}${']'.repeat(6000)}`, 'application/json', 400, 'invalid_event', 'event'],
  ['deeply nested objects', 'POST', '/event', `${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}`, 'application/json', 400, 'invalid_event', 'site_id'],
  // Not an event.
  ['a JSON string', 'POST', '/event', json('hello'), 'application/json', 400, 'invalid_event', 'event'],
  ['a JSON number', 'POST', '/event', '42', 'application/json', 400, 'invalid_event', 'event'],
  ['JSON null', 'POST', '/event', 'null', 'application/json', 400, 'invalid_event', 'event'],
  ['an array sent to /event', 'POST', '/event', json([ok]), 'application/json', 400, 'invalid_event', 'event'],
  // Missing and wrongly typed fields.
  ['a missing site_id', 'POST', '/event', json({ ...ok, site_id: undefined }), 'application/json', 400, 'invalid_event', 'site_id'],
  ['a missing event_type', 'POST', '/event', json({ ...ok, event_type: undefined }), 'application/json', 400, 'invalid_event', 'event_type'],
  ['an empty timestamp', 'POST', '/event', json({ ...ok, timestamp: '' }), 'application/json', 400, 'invalid_event', 'timestamp'],
  ['a numeric site_id', 'POST', '/event', json({ ...ok, site_id: 123 }), 'application/json', 400, 'invalid_event', 'site_id'],
  ['a boolean event_type', 'POST', '/event', json({ ...ok, event_type: true }), 'application/json', 400, 'invalid_event', 'event_type'],
  ['an object as path', 'POST', '/event', json({ ...ok, path: { $ne: null } }), 'application/json', 400, 'invalid_event', 'path'],
  ['an array as user_id', 'POST', '/event', json({ ...ok, user_id: ['a'] }), 'application/json', 400, 'invalid_event', 'user_id'],
  ['a numeric timestamp', 'POST', '/event', json({ ...ok, timestamp: 1731578400000 }), 'application/json', 400, 'invalid_event', 'timestamp'],
  ['a numeric event_id', 'POST', '/event', json({ ...ok, event_id: 7 }), 'application/json', 400, 'invalid_event', 'event_id'],
  ['an array as props', 'POST', '/event', json({ ...ok, props: ['a', 'b'] }), 'application/json', 400, 'invalid_event', 'props'],
  ['a string as props', 'POST', '/event', json({ ...ok, props: 'plan=pro' }), 'application/json', 400, 'invalid_event', 'props'],
  [
    'a click ID value as click_id_param',
    'POST',
    '/event',
    json({ ...ok, click_id_param: 'Cj0KCQiA' }),
    'application/json',
    400,
    'invalid_event',
    'click_id_param',
  ],
  [
    'an unknown ad network as click_id_param',
    'POST',
    '/event',
    json({ ...ok, click_id_param: 'fbclid' }),
    'application/json',
    400,
    'invalid_event',
    'click_id_param',
  ],
  // Oversized strings.
  ['a 129-character site_id', 'POST', '/event', json({ ...ok, site_id: 'a'.repeat(129) }), 'application/json', 400, 'invalid_event', 'site_id'],
  ['a 65-character event_type', 'POST', '/event', json({ ...ok, event_type: 'e'.repeat(65) }), 'application/json', 400, 'invalid_event', 'event_type'],
  ['a 2049-character path', 'POST', '/event', json({ ...ok, path: 'p'.repeat(2049) }), 'application/json', 400, 'invalid_event', 'path'],
  ['a 257-character user_id', 'POST', '/event', json({ ...ok, user_id: 'u'.repeat(257) }), 'application/json', 400, 'invalid_event', 'user_id'],
  // Characters Postgres cannot store, or that are not Unicode.
  ['a NUL byte in path', 'POST', '/event', json({ ...ok, path: '/a\u0000b' }), 'application/json', 400, 'invalid_event', 'path'],
  ['a NUL byte in user_id', 'POST', '/event', json({ ...ok, user_id: '\u0000' }), 'application/json', 400, 'invalid_event', 'user_id'],
  ['a NUL byte in event_type', 'POST', '/event', json({ ...ok, event_type: 'page\u0000view' }), 'application/json', 400, 'invalid_event', 'event_type'],
  [
    'a lone high surrogate',
    'POST',
    '/event',
    '{"site_id":"a","event_type":"x","timestamp":"2025-11-14T10:00:00Z","path":"\\ud800"}',
    'application/json',
    400,
    'invalid_event',
    'path',
  ],
  [
    'a lone low surrogate',
    'POST',
    '/event',
    '{"site_id":"a","event_type":"x","timestamp":"2025-11-14T10:00:00Z","user_id":"\\udc00x"}',
    'application/json',
    400,
    'invalid_event',
    'user_id',
  ],
  ['a site_id with a newline', 'POST', '/event', json({ ...ok, site_id: 'a\nb' }), 'application/json', 400, 'invalid_event', 'site_id'],
  ['a site_id with SQL in it', 'POST', '/event', json({ ...ok, site_id: "x'; drop table events;--" }), 'application/json', 400, 'invalid_event', 'site_id'],
  // Timestamps.
  [
    'a timestamp without a timezone',
    'POST',
    '/event',
    json({ ...ok, timestamp: '2025-11-14T10:00:00' }),
    'application/json',
    400,
    'invalid_event',
    'timestamp',
  ],
  ['a far-future timestamp', 'POST', '/event', json({ ...ok, timestamp: '2999-01-01T00:00:00Z' }), 'application/json', 400, 'invalid_event', 'timestamp'],
  [
    'a timestamp six minutes ahead',
    'POST',
    '/event',
    json({ ...ok, timestamp: new Date(Date.now() + 6 * 60_000).toISOString() }),
    'application/json',
    400,
    'invalid_event',
    'timestamp',
  ],
  ['an impossible date', 'POST', '/event', json({ ...ok, timestamp: '2025-02-29T00:00:00Z' }), 'application/json', 400, 'invalid_event', 'timestamp'],
  ['a timestamp before 1970', 'POST', '/event', json({ ...ok, timestamp: '1900-01-01T00:00:00Z' }), 'application/json', 400, 'invalid_event', 'timestamp'],
  ['a six-digit year', 'POST', '/event', json({ ...ok, timestamp: '+275760-09-13T00:00:00Z' }), 'application/json', 400, 'invalid_event', 'timestamp'],
  ['an event_id that is not a UUID', 'POST', '/event', json({ ...ok, event_id: "1' or '1'='1" }), 'application/json', 400, 'invalid_event', 'event_id'],
  // Sizes and batches.
  ['a body over the limit', 'POST', '/event', json({ ...ok, path: 'p'.repeat(LIMIT) }), 'application/json', 413, 'body_too_large'],
  ['a 1001-event batch', 'POST', '/events', json(Array(1001).fill(1)), 'application/json', 413, 'batch_too_large'],
  ['an empty batch', 'POST', '/events', '[]', 'application/json', 400, 'empty_batch'],
  ['a batch that is an object', 'POST', '/events', json(ok), 'application/json', 400, 'invalid_batch'],
  ['a batch whose events is not an array', 'POST', '/events', json({ events: { 0: ok } }), 'application/json', 400, 'invalid_batch'],
  ['a batch of only invalid events', 'POST', '/events', json([1, 'x', null]), 'application/json', 400, 'invalid_event'],
  // Content types, routes, methods.
  ['a form-encoded body', 'POST', '/event', 'site_id=a', 'application/x-www-form-urlencoded', 415, 'unsupported_media_type'],
  ['multipart', 'POST', '/event', '--x--', 'multipart/form-data; boundary=x', 415, 'unsupported_media_type'],
  ['no content type', 'POST', '/event', json(ok), null, 415, 'unsupported_media_type'],
  ['XML', 'POST', '/events', '<event/>', 'application/xml', 415, 'unsupported_media_type'],
  ['an unknown route', 'POST', '/evnt', json(ok), 'application/json', 404, 'not_found'],
  ['a path traversal route', 'GET', '/../../etc/passwd', null, null, 404, 'not_found'],
  ['GET on /event', 'GET', '/event', null, null, 405, 'method_not_allowed'],
  ['PUT on /events', 'PUT', '/events', json([ok]), 'application/json', 405, 'method_not_allowed'],
  ['DELETE on /stats', 'DELETE', '/stats', null, null, 405, 'method_not_allowed'],
  // Stats.
  ['stats without a token', 'GET', '/stats?site_id=a', null, null, 401, 'unauthorized'],
  ['stats with a Basic header', 'GET', '/stats?site_id=a', null, 'basic', 400, 'bad_authorization'],
  // Query parameters get the text rule of event fields: Postgres refuses NUL.
  ['a NUL in /stats event_type', 'GET', '/stats?site_id=s&event_type=a%00b', null, 'bearer', 400, 'invalid_query', 'event_type'],
  ['a NUL in /stats site_id', 'GET', '/stats?site_id=s%00', null, 'bearer', 400, 'invalid_query', 'site_id'],
  ['a NUL in /stats date', 'GET', '/stats?site_id=s&date=2025-11-14%00', null, 'bearer', 400, 'invalid_query', 'date'],
  ['a NUL in /stats limit', 'GET', '/stats?site_id=s&limit=1%00', null, 'bearer', 400, 'invalid_query', 'limit'],
  ['a NUL in /v1/stats event_type', 'GET', '/v1/stats?site_id=s&from=2025-11-01&event_type=%00', null, 'bearer', 400, 'invalid_query', 'event_type'],
  ['a NUL in /v1/stats from', 'GET', '/v1/stats?site_id=s&from=2025-11-01%00', null, 'bearer', 400, 'invalid_query', 'from'],
  ['a NUL in /v1/stats to', 'GET', '/v1/stats?site_id=s&from=2025-11-01&to=2025-11-02%00', null, 'bearer', 400, 'invalid_query', 'to'],
  ['a NUL in /v1/stats granularity', 'GET', '/v1/stats?site_id=s&from=2025-11-01&granularity=day%00', null, 'bearer', 400, 'invalid_query', 'granularity'],
  ['a NUL in an unknown stats parameter', 'GET', '/v1/stats?site_id=s&from=2025-11-01&x=%00', null, 'bearer', 400, 'invalid_query', 'x'],
  ['a NUL in a stats parameter name', 'GET', '/v1/stats?site_id=s&from=2025-11-01&%00=1', null, 'bearer', 400, 'invalid_query', 'query'],
  // Years 0-99 written with four digits are those years (before 1970), not 1900-1999.
  [
    'a two-digit year 0070 in a timestamp',
    'POST',
    '/event',
    json({ ...ok, timestamp: '0070-06-15T00:00:00Z' }),
    'application/json',
    400,
    'invalid_event',
    'timestamp',
  ],
  ['the year 0001 in a timestamp', 'POST', '/event', json({ ...ok, timestamp: '0001-01-01T00:00:00Z' }), 'application/json', 400, 'invalid_event', 'timestamp'],
  ['the year 0099 in a batch timestamp', 'POST', '/events', json([{ ...ok, timestamp: '0099-12-31T23:59:59Z' }]), 'application/json', 400, 'invalid_event'],
  ['a two-digit year in /v1/stats from', 'GET', '/v1/stats?site_id=s&from=0070-01-01T00:00:00Z', null, 'bearer', 400, 'invalid_query', 'from'],
  ['a two-digit year date in /v1/stats to', 'GET', '/v1/stats?site_id=s&from=2025-11-01&to=0070-01-01', null, 'bearer', 400, 'invalid_query', 'to'],
  ['a two-digit year date in /stats', 'GET', '/stats?site_id=s&date=0070-01-01', null, 'bearer', 400, 'invalid_query', 'date'],
]
// Every row gets all eight values: bun hands a test function with more parameters than values a done callback.
const cases: Case[] = rows.map(([n, m, p, b, t, s, c, f]) => [n, m, p, b, t, s, c, f ?? ''])

describe('a hostile or malformed request', () => {
  test('table has at least 40 kinds', () => expect(cases.length).toBeGreaterThanOrEqual(40))

  test.each(cases)('%s gets the documented 4xx and a JSON error', async (_name, method, path, body, type, status, code, field) => {
    const before = await r.redis.xlen(r.queue.stream)
    const headers: Record<string, string> = {}
    if (type === 'basic') headers.authorization = 'Basic dXNlcjpwYXNz'
    else if (type === 'bearer') headers.authorization = `Bearer ${TOKEN}`
    else if (type) headers['content-type'] = type
    const res = await app.request(path, { method, body: body ?? undefined, headers })
    expect(res.status).toBe(status)
    expect(res.headers.get('content-type')).toContain('application/json')
    const payload = (await res.json()) as { error?: string; code?: string; details?: { field: string }[]; results?: { details: { field: string }[] }[] }
    expect(payload.code ?? (payload as { status?: string }).status).toBe(code === 'invalid_event' && path === '/events' ? 'rejected' : code)
    if (payload.error !== undefined) expect(payload.error.length).toBeGreaterThan(5)
    if (field) expect(payload.details?.map((d) => d.field)).toContain(field)
    expect(await r.redis.xlen(r.queue.stream)).toBe(before)
  })
})

describe('SQL injection', () => {
  const auth = { authorization: `Bearer ${TOKEN}` }
  const nasty = [
    "'; drop table events; --",
    "' or '1'='1",
    '"; select pg_sleep(10); --',
    '\\x27 union select * from event_ids --',
    '$$; delete from rollup_state; $$',
  ]

  test('strings in every field are stored and matched literally', async () => {
    const { insertEvents, stats } = createStore(db.sql)
    for (const [i, s] of nasty.entries()) {
      const site = `sqli-${i}`
      await insertEvents([
        { event_id: crypto.randomUUID(), site_id: site, event_type: s, path: s, user_id: s, timestamp: '2025-11-14T10:00:00.000Z', received_at: Date.now() },
      ])
      const res = await app.request(`/stats?site_id=${site}&event_type=${encodeURIComponent(s)}&date=2025-11-14`, { headers: auth })
      expect(await res.json()).toMatchObject({ total_views: 1, unique_users: 1, top_paths: [{ path: s, views: 1 }] })
      expect((await stats({ siteId: site, from: null, to: null, granularity: null })).total_views).toBe(1)
    }
    expect((await db.sql`select count(*)::int as n from rollup_state`)[0]!.n).toBe(1)
  })

  test('query parameters that carry SQL are rejected or matched literally', async () => {
    for (const s of nasty) {
      const res = await app.request(`/v1/stats?site_id=${encodeURIComponent(s)}&from=2025-11-01`, { headers: auth })
      expect(res.status).toBe(400)
      const res2 = await app.request(`/v1/stats?site_id=x&from=2025-11-01&event_type=${encodeURIComponent(s)}&granularity=month`, { headers: auth })
      expect(res2.status).toBe(200)
      expect(((await res2.json()) as { totals: { views: number } }).totals.views).toBe(0)
    }
  })
})

describe('fuzzing', () => {
  const anyJson = fc.oneof(
    fc.jsonValue(),
    fc.record(
      { site_id: fc.string(), event_type: fc.string(), timestamp: fc.string(), path: fc.option(fc.string({ unit: 'binary' })), user_id: fc.anything() },
      { requiredKeys: [] },
    ),
    fc.record({
      site_id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/),
      event_type: fc.string({ minLength: 1, maxLength: 64, unit: 'binary' }),
      timestamp: fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date(Date.now() + 240_000), noInvalidDate: true }).map((d) => d.toISOString()),
      path: fc.option(fc.string({ maxLength: 2048, unit: 'binary' })),
      user_id: fc.option(fc.string({ maxLength: 256, unit: 'binary' })),
    }),
  )

  test('the HTTP layer never answers 5xx, and every accepted event can be stored', async () => {
    const store = createStore(db.sql)
    const seen: string[] = []
    await fc.assert(
      fc.asyncProperty(anyJson, fc.constantFrom('application/json', 'text/plain'), fc.boolean(), async (value, type, batch) => {
        const body = batch ? JSON.stringify([value]) : (JSON.stringify(value) ?? 'null')
        const res = await app.request(batch ? '/events' : '/event', { method: 'POST', body, headers: { 'content-type': type } })
        expect(res.status).toBeLessThan(500)
        expect([202, 400, 413]).toContain(res.status)
        const payload = (await res.json()) as { event_id?: string; results?: { event_id?: string }[] }
        if (res.status === 202) seen.push(...(payload.results?.map((x) => x.event_id!) ?? [payload.event_id!]))
      }),
      { numRuns: 300, seed: 42 },
    )
    // Everything accepted goes into Postgres without an error.
    const entries = await r.redis.xrange(r.queue.stream, '-', '+')
    const events = entries.flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!) as Event[]).filter((e) => seen.includes(e.event_id))
    expect(events.length).toBe(seen.length)
    expect(seen.length).toBeGreaterThan(10)
    expect(await store.insertEvents(events)).toBe(events.length)
  })

  test('arbitrary bytes never get a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), async (b) => {
        const res = await app.request('/event', { method: 'POST', body: b, headers: { 'content-type': 'application/json' } })
        expect(res.status).toBeGreaterThanOrEqual(400)
        expect(res.status).toBeLessThan(500)
      }),
      { numRuns: 300, seed: 7 },
    )
  })
})

describe('fuzzing the query API', () => {
  // Sites in zones with DST, half and three-quarter hours, and a skipped day (Samoa's
  // 2011-12-30); events from 1970 to now, some rolled up.
  const ZONES = { 'fz-utc': 'UTC', 'fz-ny': 'America/New_York', 'fz-kolkata': 'Asia/Kolkata', 'fz-chatham': 'Pacific/Chatham', 'fz-apia': 'Pacific/Apia' }
  const stop = new AbortController()
  afterAll(() => stop.abort())

  test('POST /v1/query never answers 5xx, over any dates, zones, metrics, dimensions, filters and comparisons', async () => {
    const sites = createSites(db.sql)
    for (const [site_id, timezone] of Object.entries(ZONES)) await sites.add({ site_id, timezone })
    const store = createStore(db.sql)
    const stamps = ['1970-01-01T00:00:00Z', '2011-12-29T20:00:00Z', '2011-12-31T01:00:00Z', new Date(Date.now() - 3_600_000).toISOString()]
    const seed = (i: number) =>
      Object.keys(ZONES).flatMap((site_id) =>
        stamps.map((timestamp) => ({
          event_id: crypto.randomUUID(),
          site_id,
          event_type: i % 2 ? 'pageview' : 'signup',
          path: `/p${i}`,
          user_id: `u${i}`,
          timestamp,
          received_at: Date.now(),
          source: 'Google',
          country: 'DE',
          props: { plan: 'pro' },
        })),
      )
    await store.insertEvents(seed(0))
    await store.rollup()
    await store.insertEvents(seed(1))
    const registry = createRegistry({ sql: db.sql, log: silentLogger() })
    await registry.start(stop.signal)
    const zoned = createApp(
      { queue: createQueue(r.redis, r.queue), store, log: silentLogger(), checks: {}, registry },
      { ingest: { bodyLimitBytes: LIMIT, batchMax: 1000, maxFutureMs: 300_000 }, statsToken: TOKEN, hourRollupDays: 90 },
    )
    const day = fc
      .date({ min: new Date('1969-12-30T00:00:00Z'), max: new Date('9999-12-31T00:00:00Z'), noInvalidDate: true })
      .map((d) => d.toISOString().slice(0, 10))
    const dims = [...DIMENSIONS, ...VISIT_ONLY_DIMENSIONS, 'props:plan']
    const times = GRANULARITIES.map((g) => `time:${g}`)
    const value = fc.oneof(fc.constantFrom('(none)', '', '*', '%', '_', '/p1', 'Google', 'DE'), fc.string({ maxLength: 20, unit: 'binary' }))
    const shape = (parts: {
      range: fc.Arbitrary<unknown>
      metric: fc.Arbitrary<string>
      dim: string[]
      time: string[]
      op: string[]
      limit: fc.Arbitrary<number>
    }) =>
      fc.record(
        {
          site_id: fc.constantFrom(...Object.keys(ZONES)),
          date_range: parts.range,
          metrics: fc.uniqueArray(parts.metric, { minLength: 1, maxLength: 3 }),
          dimensions: fc.tuple(fc.option(fc.constantFrom(...parts.dim)), fc.option(fc.constantFrom(...parts.time))).map((d) => d.filter((x) => x !== null)),
          filters: fc.array(fc.tuple(fc.constantFrom(...parts.op), fc.constantFrom(...parts.dim), fc.array(value, { minLength: 1, maxLength: 3 })), {
            maxLength: 2,
          }),
          include: fc.constantFrom({ comparisons: { mode: 'previous_period' } }, { comparisons: { mode: 'year_over_year' } }, {}),
          limit: parts.limit,
        },
        { requiredKeys: ['site_id', 'date_range', 'metrics'] },
      )
    const dates = fc.tuple(day, day).map(([a, b]) => (a <= b ? [a, b] : [b, a]))
    // Mostly queries a user could send; some with anything wrong in them.
    const body = fc.oneof(
      {
        weight: 4,
        arbitrary: shape({
          range: fc.oneof(fc.constantFrom(...DATE_RANGES), dates),
          metric: fc.constantFrom(...METRICS),
          dim: dims,
          time: times,
          op: [...OPERATORS],
          limit: fc.integer({ min: 1, max: 10_000 }),
        }),
      },
      {
        weight: 1,
        arbitrary: shape({
          range: fc.oneof(fc.tuple(day, day), fc.string(), fc.anything()),
          metric: fc.constantFrom(...METRICS, 'nope'),
          dim: [...dims, 'props:', 'nope'],
          time: [...times, 'time:week'],
          op: [...OPERATORS, 'like'],
          limit: fc.oneof(fc.integer({ min: -1, max: 10_001 }), fc.constant(1.5)),
        }),
      },
    )
    const statuses = new Map<number, number>()
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const res = await zoned.request('/v1/query', {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify(b),
        })
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        const answer = (await res.json()) as { results?: unknown[]; error?: string; code?: string }
        expect({ status: res.status, answer }).toEqual(
          res.status === 200
            ? { status: 200, answer: expect.objectContaining({ results: expect.any(Array) }) }
            : { status: expect.any(Number), answer: expect.objectContaining({ error: expect.any(String), code: expect.any(String) }) },
        )
        expect([200, 400, 422]).toContain(res.status)
      }),
      { numRuns: 400, seed: 20261203 },
    )
    // The property saw answers of each kind, not only refusals.
    expect(statuses.get(200)).toBeGreaterThan(20)
    expect(statuses.get(400)).toBeGreaterThan(20)
  }, 120_000)
})
