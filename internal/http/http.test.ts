import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Redis from 'ioredis'
import { silentLogger } from '../log/log.ts'
import { createQueue } from '../queue/queue.ts'
import { createSql } from '../clients/clients.ts'
import { createStore } from '../store/store.ts'
import { createTestDatabase, createTestRedis, freePort, type TestDatabase, type TestRedis } from '../testkit/testkit.ts'
import { createApp } from './http.ts'

const TOKEN = 'test-token'
const ingest = { bodyLimitBytes: 4096, batchMax: 5, maxFutureMs: 5 * 60_000 }
const valid = { site_id: 'site-abc-123', event_type: 'pageview', timestamp: '2025-11-14T10:00:00Z', path: '/', user_id: 'u-1' }

let db: TestDatabase
let r: TestRedis
let app: ReturnType<typeof createApp>
let stopping = false

beforeAll(async () => {
  ;[db, r] = await Promise.all([createTestDatabase(), createTestRedis()])
  const store = createStore(db.sql)
  app = createApp(
    { queue: createQueue(r.redis, r.queue), store, log: silentLogger(), checks: { redis: () => r.redis.ping(), postgres: () => store.ping() } },
    { ingest, statsToken: TOKEN, isStopping: () => stopping },
  )
})
afterAll(async () => {
  await r.cleanup()
  await db.drop()
})

const post = (path: string, body: string | Uint8Array, type: string | null = 'application/json') =>
  app.request(path, { method: 'POST', body, headers: type ? { 'content-type': type } : {} })
const postJson = (path: string, value: unknown) => post(path, JSON.stringify(value))
const streamIds = async () =>
  (await r.redis.xrange(r.queue.stream, '-', '+')).flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!) as { event_id: string }[]).map((e) => e.event_id)

async function expectError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toContain('application/json')
  const body = (await res.json()) as { error: string; code: string; details?: unknown[] }
  expect(body.code).toBe(code)
  expect(body.error.length).toBeGreaterThan(0)
  return body
}

describe('POST /event', () => {
  test('answers 202 with the event_id, and the event is on the stream', async () => {
    const res = await postJson('/event', valid)
    expect(res.status).toBe(202)
    const body = (await res.json()) as { status: string; event_id: string }
    expect(body.status).toBe('accepted')
    expect(await streamIds()).toContain(body.event_id)
  })

  test('accepts text/plain, as navigator.sendBeacon sends it', async () => {
    const res = await post('/event', JSON.stringify(valid), 'text/plain;charset=UTF-8')
    expect(res.status).toBe(202)
  })

  test('rejects invalid JSON with 400', async () => {
    await expectError(await post('/event', '{"site_id":'), 400, 'invalid_json')
  })

  test('rejects a body that is not valid UTF-8 with 400', async () => {
    const bytes = new Uint8Array([...new TextEncoder().encode('{"site_id":"'), 0xff, 0xfe, ...new TextEncoder().encode('"}')])
    await expectError(await post('/event', bytes), 400, 'invalid_utf8')
  })

  test('rejects an empty body with 400', async () => {
    await expectError(await post('/event', ''), 400, 'empty_body')
  })

  test('rejects an invalid event with 400 naming every problem', async () => {
    const body = await expectError(await postJson('/event', { site_id: 'bad id', timestamp: 'yesterday' }), 400, 'invalid_event')
    expect(body.details).toEqual([
      { field: 'site_id', message: expect.stringContaining('1-128 characters') },
      { field: 'event_type', message: 'event_type is required' },
      { field: 'timestamp', message: expect.stringContaining('ISO 8601') },
    ])
  })

  test('rejects a body over the configured limit with 413', async () => {
    await expectError(await postJson('/event', { ...valid, path: `/${'x'.repeat(5000)}` }), 413, 'body_too_large')
  })

  test('rejects other content types with 415', async () => {
    await expectError(await post('/event', 'site_id=x', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type')
    await expectError(await post('/event', JSON.stringify(valid), null), 415, 'unsupported_media_type')
  })

  test('rejects deeply nested JSON with 400, without crashing', async () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`
    const big = createApp(
      { queue: createQueue(r.redis, r.queue), store: createStore(db.sql), log: silentLogger(), checks: {} },
      { ingest: { ...ingest, bodyLimitBytes: 1 << 20 }, statsToken: TOKEN },
    )
    const res = await big.request('/event', { method: 'POST', body: deep, headers: { 'content-type': 'application/json' } })
    expect(res.status).toBe(400)
  })

  test('answers 503 with Retry-After, never 202, when Redis cannot take the write', async () => {
    const port = await freePort() // nothing listens here
    const dead = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    dead.on('error', () => {}) // unreachable on purpose
    const down = createApp({ queue: createQueue(dead, r.queue), store: createStore(db.sql), log: silentLogger(), checks: {} }, { ingest, statsToken: TOKEN })
    const one = await down.request('/event', { method: 'POST', body: JSON.stringify(valid), headers: { 'content-type': 'application/json' } })
    await expectError(one, 503, 'queue_unavailable')
    expect(one.headers.get('retry-after')).toBe('1')
    const batch = await down.request('/events', { method: 'POST', body: JSON.stringify([valid, valid]), headers: { 'content-type': 'application/json' } })
    expect(batch.status).toBe(503)
    expect(batch.headers.get('retry-after')).toBe('1')
    expect(((await batch.json()) as { accepted: number }).accepted).toBe(0)
    dead.disconnect()
  })
})

describe('POST /events', () => {
  test('answers a fully accepted batch with exactly the JSON the general answer would have', async () => {
    const res = await postJson('/events', [valid, { ...valid, path: '/b' }, { ...valid, event_id: 'C2E3A6B4-1D2F-4A5B-8C9D-0E1F2A3B4C5D' }])
    expect(res.status).toBe(202)
    const text = await res.text()
    const ids = (JSON.parse(text) as { results: { event_id: string }[] }).results.map((x) => x.event_id)
    expect(ids[2]).toBe('c2e3a6b4-1d2f-4a5b-8c9d-0e1f2a3b4c5d')
    const results = ids.map((event_id, index) => ({ index, status: 'accepted', event_id }))
    expect(text).toBe(JSON.stringify({ status: 'accepted', accepted: 3, rejected: 0, failed: 0, results }))
    expect(await streamIds()).toEqual(expect.arrayContaining(ids))
  })

  test('accepts a JSON array and answers 202 with a result per event', async () => {
    const res = await postJson('/events', [valid, { ...valid, path: '/pricing' }])
    expect(res.status).toBe(202)
    const body = (await res.json()) as { status: string; accepted: number; results: { status: string; event_id: string }[] }
    expect(body.status).toBe('accepted')
    expect(body.accepted).toBe(2)
    const ids = await streamIds()
    for (const item of body.results) expect(ids).toContain(item.event_id)
  })

  test('accepts {"events": [...]}', async () => {
    expect((await postJson('/events', { events: [valid] })).status).toBe(202)
  })

  test('answers 207 with per-event results when some events are invalid, so clients retry just those', async () => {
    const res = await postJson('/events', [valid, { ...valid, event_type: '' }, valid])
    expect(res.status).toBe(207)
    const body = (await res.json()) as { status: string; accepted: number; rejected: number; results: Record<string, unknown>[] }
    expect(body).toMatchObject({ status: 'partial', accepted: 2, rejected: 1 })
    expect(body.results[1]).toEqual({
      index: 1,
      status: 'rejected',
      code: 'invalid_event',
      details: [{ field: 'event_type', message: 'event_type must not be empty' }],
    })
    expect(body.results[0]).toMatchObject({ index: 0, status: 'accepted' })
  })

  test('answers 400 when every event is invalid, and stores none', async () => {
    const before = await r.redis.xlen(r.queue.stream)
    const res = await postJson('/events', [{}, { site_id: 'x' }])
    expect(res.status).toBe(400)
    expect(((await res.json()) as { status: string }).status).toBe('rejected')
    expect(await r.redis.xlen(r.queue.stream)).toBe(before)
  })

  test('rejects a batch over the limit with 413', async () => {
    await expectError(await postJson('/events', Array(ingest.batchMax + 1).fill(valid)), 413, 'batch_too_large')
  })

  test('rejects an empty batch with 400', async () => {
    await expectError(await postJson('/events', []), 400, 'empty_batch')
  })

  test('rejects a body that is neither an array nor {"events": [...]} with 400', async () => {
    await expectError(await postJson('/events', valid), 400, 'invalid_batch')
    await expectError(await postJson('/events', { events: 'x' }), 400, 'invalid_batch')
  })
})

describe('routing', () => {
  test('answers a wrong method with 405 and Allow', async () => {
    const res = await app.request('/event', { method: 'GET' })
    await expectError(res, 405, 'method_not_allowed')
    expect(res.headers.get('allow')).toBe('POST, OPTIONS')
  })

  test('answers an unknown route with 404 JSON', async () => {
    await expectError(await app.request('/nope'), 404, 'not_found')
  })
})

describe('GET /stats', () => {
  const auth = { authorization: `Bearer ${TOKEN}` }
  beforeAll(async () => {
    const store = createStore(db.sql)
    const e = (i: number, o: Partial<typeof valid> & { event_type?: string }) => ({
      event_id: `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      received_at: Date.now(),
      site_id: 'stats-site',
      event_type: 'pageview',
      path: '/',
      user_id: 'u-1',
      timestamp: '2025-11-14T10:00:00.000Z',
      ...o,
    })
    await store.insertEvents([
      e(1, { user_id: 'u-123', path: '/' }),
      e(2, { user_id: 'u-456', path: '/pricing' }),
      e(3, { user_id: 'u-123', path: '/pricing' }),
      e(4, { user_id: 'u-789', path: '/signup', event_type: 'click' }),
      e(5, { user_id: 'u-999', timestamp: '2025-11-15T00:00:00.000Z' }),
      e(6, { user_id: 'u-1', timestamp: '2025-11-13T23:59:59.999Z' }),
      e(7, { site_id: 'other-site' }),
    ] as never)
  })

  test('needs a bearer token', async () => {
    const res = await app.request('/stats?site_id=stats-site')
    await expectError(res, 401, 'unauthorized')
    expect(res.headers.get('www-authenticate')).toContain('Bearer')
    await expectError(await app.request('/stats?site_id=stats-site', { headers: { authorization: 'Bearer wrong' } }), 401, 'unauthorized')
  })

  test('counts views, unique users and top paths for one UTC day', async () => {
    const res = await app.request('/stats?site_id=stats-site&date=2025-11-14', { headers: auth })
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      site_id: 'stats-site',
      date: '2025-11-14',
      event_type: null,
      total_views: 4,
      unique_users: 3,
      top_paths: [
        { path: '/pricing', views: 2 },
        { path: '/', views: 1 },
        { path: '/signup', views: 1 },
      ],
    })
  })

  test('filters by event_type', async () => {
    const res = await app.request('/stats?site_id=stats-site&date=2025-11-14&event_type=click', { headers: auth })
    expect(await res.json()).toMatchObject({ total_views: 1, unique_users: 1, top_paths: [{ path: '/signup', views: 1 }] })
  })

  test('covers all time without a date, and honours limit', async () => {
    const res = await app.request('/stats?site_id=stats-site&limit=1', { headers: auth })
    expect(await res.json()).toMatchObject({ date: null, total_views: 6, unique_users: 5, top_paths: [{ path: '/', views: 3 }] })
  })

  test('answers zeros for a site with no events', async () => {
    const res = await app.request('/stats?site_id=nobody&date=2025-11-14', { headers: auth })
    expect(await res.json()).toMatchObject({ total_views: 0, unique_users: 0, top_paths: [] })
  })

  test.each([
    ['', 'site_id'],
    ['site_id=bad%20id', 'site_id'],
    ['site_id=s&date=2025-02-30', 'date'],
    ['site_id=s&date=14-11-2025', 'date'],
    ['site_id=s&date=0000-01-01', 'date'],
    ['site_id=s&date=1969-12-31', 'date'],
    ['site_id=s&date=9999-12-31', 'date'],
    ['site_id=s&limit=0', 'limit'],
    ['site_id=s&limit=abc', 'limit'],
    ['site_id=s&event_type=', 'event_type'],
  ])('rejects the query %p with 400 naming %p', async (query, field) => {
    const body = await expectError(await app.request(`/stats?${query}`, { headers: auth }), 400, 'invalid_query')
    expect(body.details).toContainEqual({ field, message: expect.any(String) })
  })
})

describe('health', () => {
  test('/healthz answers 200 while the process lives', async () => {
    expect((await app.request('/healthz')).status).toBe(200)
  })

  test('/readyz answers 200 when Redis and Postgres answer', async () => {
    const res = await app.request('/readyz')
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ status: 'ready', checks: { redis: 'ok', postgres: 'ok' } })
  })

  test('/readyz answers 503 naming the dependency that fails', async () => {
    const failing = createApp(
      {
        queue: createQueue(r.redis, r.queue),
        store: createStore(db.sql),
        log: silentLogger(),
        checks: {
          redis: async () => {
            throw new Error('down')
          },
        },
      },
      { ingest, statsToken: TOKEN },
    )
    const res = await failing.request('/readyz')
    expect(res.status).toBe(503)
    expect(await res.json()).toEqual({ status: 'not ready', checks: { redis: 'failing: down' } })
  })

  test('/readyz answers 503 once shutdown has begun', async () => {
    stopping = true
    const res = await app.request('/readyz')
    stopping = false
    expect(res.status).toBe(503)
  })
})

describe('GET /v1/stats', () => {
  const auth = { authorization: `Bearer ${TOKEN}` }
  const get = (q: string) => app.request(`/v1/stats?${q}`, { headers: auth })

  test('needs a bearer token', async () => {
    await expectError(await app.request('/v1/stats?site_id=stats-site&from=2025-11-01'), 401, 'unauthorized')
  })

  test('answers totals, a zero-filled series and top paths for a range', async () => {
    const res = await get('site_id=stats-site&from=2025-11-13&to=2025-11-16&granularity=day')
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      site_id: 'stats-site',
      from: '2025-11-13T00:00:00.000Z',
      to: '2025-11-16T00:00:00.000Z',
      granularity: 'day',
      event_type: null,
      totals: { views: 6, unique_users: 5 },
      series: [
        { bucket: '2025-11-13T00:00:00.000Z', views: 1, unique_users: 1 },
        { bucket: '2025-11-14T00:00:00.000Z', views: 4, unique_users: 3 },
        { bucket: '2025-11-15T00:00:00.000Z', views: 1, unique_users: 1 },
      ],
      top_paths: [
        { path: '/', views: 3 },
        { path: '/pricing', views: 2 },
        { path: '/signup', views: 1 },
      ],
      top_paths_max_error: 0,
    })
  })

  test('accepts timestamps on hour boundaries and hourly granularity', async () => {
    const res = await get('site_id=stats-site&from=2025-11-14T09:00:00Z&to=2025-11-14T12:00:00%2B01:00&granularity=hour&event_type=pageview')
    const body = (await res.json()) as { series: unknown[]; totals: unknown }
    expect(body.series).toEqual([
      { bucket: '2025-11-14T09:00:00.000Z', views: 0, unique_users: 0 },
      { bucket: '2025-11-14T10:00:00.000Z', views: 3, unique_users: 2 },
    ])
  })

  test.each([
    ['site_id=stats-site', 'from', /from/],
    ['site_id=stats-site&from=yesterday', 'from', /date \(YYYY-MM-DD\) or an ISO 8601/],
    ['site_id=stats-site&from=2025-11-14T10:30:00Z', 'from', /whole UTC hour/],
    ['site_id=stats-site&from=2025-11-14&to=2025-11-13', 'to', /after from/],
    ['site_id=stats-site&from=2025-11-14&granularity=week', 'granularity', /hour, day, month, year/],
    ['site_id=stats-site&from=0000-01-01&granularity=year', 'from', /date \(YYYY-MM-DD\)/],
    ['site_id=stats-site&from=2025-01-01&to=9999-12-31T23:00:00-01:00&granularity=year', 'to', /date \(YYYY-MM-DD\)/],
    ['site_id=stats-site&from=2000-01-01&to=2025-01-01&granularity=hour', 'granularity', /coarser/],
  ])('rejects %p with 400 naming %p', async (q, field, message) => {
    const body = await expectError(await get(q), 400, 'invalid_query')
    expect(body.details).toContainEqual({ field, message: expect.stringMatching(message) })
  })
})

describe('GET /v1/stats defaults and retention', () => {
  const auth = { authorization: `Bearer ${TOKEN}` }
  const HOUR = 3_600_000

  test('counts, with no to given, an event whose timestamp is as far ahead as ingest accepts', async () => {
    // Ingest that accepts timestamps up to 3 hours ahead: the default range must reach them.
    const aheadMs = 3 * HOUR
    const store = createStore(db.sql)
    const ahead = createApp(
      { queue: createQueue(r.redis, r.queue), store, log: silentLogger(), checks: {} },
      { ingest: { ...ingest, maxFutureMs: aheadMs }, statsToken: TOKEN },
    )
    const ts = new Date(Date.now() + aheadMs - 60_000).toISOString()
    const res = await ahead.request('/event', {
      method: 'POST',
      body: JSON.stringify({ ...valid, site_id: 'ahead', timestamp: ts }),
      headers: { 'content-type': 'application/json' },
    })
    expect(res.status).toBe(202)
    const [event] = (await r.redis.xrange(r.queue.stream, '-', '+'))
      .flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!) as { site_id: string }[])
      .filter((e) => e.site_id === 'ahead')
    await store.insertEvents([event as never])
    const from = new Date(Math.floor(Date.now() / HOUR) * HOUR).toISOString()
    const stats = (await (await ahead.request(`/v1/stats?site_id=ahead&from=${from}&granularity=hour`, { headers: auth })).json()) as {
      to: string
      totals: { views: number }
    }
    expect(stats.totals.views).toBe(1)
    expect(new Date(stats.to).getTime()).toBeGreaterThan(new Date(ts).getTime())
  })

  test('answers 422 hourly_detail_expired for hourly buckets past their retention, and whole days still answer', async () => {
    const store = createStore(db.sql)
    const kept = createApp({ queue: createQueue(r.redis, r.queue), store, log: silentLogger(), checks: {} }, { ingest, statsToken: TOKEN, hourRollupDays: 30 })
    const day = new Date(Math.floor(Date.now() / (24 * HOUR)) * 24 * HOUR - 40 * 24 * HOUR).toISOString().slice(0, 10)
    const body = await expectError(
      await kept.request(`/v1/stats?site_id=s&from=${day}T05:00:00Z&granularity=hour`, { headers: auth }),
      422,
      'hourly_detail_expired',
    )
    expect(body.error).toContain('hourly detail is kept only from')
    expect((await kept.request(`/v1/stats?site_id=s&from=${day}&granularity=day`, { headers: auth })).status).toBe(200)
    expect((await kept.request(`/stats?site_id=s&date=${day}`, { headers: auth })).status).toBe(200)
  })
})

describe('API documentation', () => {
  test('/openapi.json describes every route, with schemas generated from the validators', async () => {
    const res = await app.request('/openapi.json')
    expect(res.status).toBe(200)
    const doc = (await res.json()) as {
      openapi: string
      paths: Record<
        string,
        Record<
          string,
          {
            parameters?: { name: string; required: boolean }[]
            requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown>; required?: string[] } }> }
          }
        >
      >
    }
    expect(doc.openapi).toStartWith('3.')
    expect(Object.keys(doc.paths).sort()).toEqual(['/event', '/events', '/healthz', '/readyz', '/stats', '/v1/export', '/v1/query', '/v1/stats'])
    const event = doc.paths['/event']!.post!.requestBody!.content['application/json']!.schema
    expect(event.required).toEqual(['site_id', 'event_type'])
    expect(event.properties!.site_id).toEqual({ type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' })
    expect(doc.paths['/event']!.post!.requestBody!.content['text/plain']).toBeDefined()
    expect(Object.keys(event.properties!)).toEqual(
      expect.arrayContaining([
        'referrer',
        'utm_source',
        'utm_medium',
        'utm_campaign',
        'utm_content',
        'utm_term',
        'screen_width',
        'click_id_param',
        'props',
        'ip',
        'user_agent',
      ]),
    )
    expect(JSON.stringify(event.properties!.click_id_param)).toContain('"gclid"')
    expect(doc.paths['/v1/stats']!.get!.parameters!.map((p) => [p.name, p.required])).toEqual([
      ['site_id', true],
      ['from', true],
      ['to', false],
      ['granularity', false],
      ['event_type', false],
      ['limit', false],
    ])
  })

  test('/docs renders it', async () => {
    const res = await app.request('/docs')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/html')
    expect(await res.text()).toContain("fetch('/openapi.json')")
  })
})

describe('POST /v1/query', () => {
  const query = (body: unknown, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }) =>
    app.request('/v1/query', {
      method: 'POST',
      body: typeof body === 'string' ? body : JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...headers },
    })

  test('needs the stats token', async () => {
    await expectError(await query({ site_id: 'q', date_range: 'day', metrics: ['events'] }, {}), 401, 'unauthorized')
  })

  test('answers a breakdown from what the worker stored', async () => {
    const store = createStore(db.sql)
    await store.insertEvents([
      {
        event_id: crypto.randomUUID(),
        site_id: 'http-q',
        event_type: 'pageview',
        path: '/',
        user_id: 'a',
        timestamp: '2025-11-14T10:00:00.000Z',
        received_at: Date.now(),
        country: 'DE',
      },
      {
        event_id: crypto.randomUUID(),
        site_id: 'http-q',
        event_type: 'pageview',
        path: '/',
        user_id: 'b',
        timestamp: '2025-11-14T11:00:00.000Z',
        received_at: Date.now(),
      },
    ])
    const res = await query({ site_id: 'http-q', date_range: ['2025-11-14', '2025-11-14'], metrics: ['visitors', 'pageviews'], dimensions: ['country'] })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({
      results: [
        { dimensions: ['(none)'], metrics: [1, 1] },
        { dimensions: ['DE'], metrics: [1, 1] },
      ],
      meta: { site_id: 'http-q', source: 'rollups', trimmed_events: 0 },
    })
  })

  test('names every problem of a bad body in a 400, and refuses invalid JSON and oversized bodies', async () => {
    const body = await expectError(await query({ site_id: 'q', date_range: 'week', metrics: [] }), 400, 'invalid_query')
    expect((body.details as { field: string }[]).map((d) => d.field)).toEqual(['date_range', 'metrics'])
    await expectError(await query('{"site_id":'), 400, 'invalid_json')
    await expectError(
      await query({ site_id: 'q', date_range: 'day', metrics: ['events'], filters: [['is', 'path', ['x'.repeat(70_000)]]] }),
      413,
      'body_too_large',
    )
  })
})

describe('when Postgres is slow or gone', () => {
  const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
  const appOn = (sql: ReturnType<typeof createSql>, queryTimeoutMs = 0) =>
    createApp({ queue: createQueue(r.redis, r.queue), store: createStore(sql), log: silentLogger(), checks: {} }, { ingest, statsToken: TOKEN, queryTimeoutMs })
  const asks = (a: ReturnType<typeof createApp>) => [
    a.request('/v1/stats?site_id=slow-site&from=2025-11-13&to=2025-11-16', { headers: auth }),
    a.request('/v1/query', { method: 'POST', headers: auth, body: JSON.stringify({ site_id: 'slow-site', date_range: 'all', metrics: ['visitors'] }) }),
    a.request('/stats?site_id=slow-site', { headers: auth }),
  ]

  /** Runs `body` while another transaction holds the rollup watermark's table, which every stats read looks up: they wait. */
  async function whileStatsWait(body: () => Promise<void>): Promise<void> {
    const holder = createSql(db.url, { max: 1 })
    let release = () => {}
    const held = holder.begin(async (tx) => {
      await tx`lock table rollup_shards in access exclusive mode`
      await new Promise<void>((resolve) => (release = resolve))
    })
    try {
      await Bun.sleep(100)
      await body()
    } finally {
      release()
      await held
      await holder.end()
    }
  }

  test('a query that runs past the statement timeout is cancelled and answered 503 query_timeout, not 500', async () => {
    const slow = createSql(db.url, { max: 2, statementTimeoutMs: 300 })
    await whileStatsWait(async () => {
      for (const res of await Promise.all(asks(appOn(slow)))) {
        expect(res.status).toBe(503)
        expect(res.headers.get('retry-after')).toBe('30')
        expect(await res.json()).toEqual({ error: expect.stringContaining('QUERY_TIMEOUT_MS'), code: 'query_timeout' })
      }
    }).finally(() => slow.end())
  })

  test("a /v1/query with a comparison and an export, each several statements, are cut together at QUERY_TIMEOUT_MS from the request's start", async () => {
    const plain = createSql(db.url, { max: 4 }) // no statement_timeout of its own: only the request's deadline
    await whileStatsWait(async () => {
      const app = appOn(plain, 400)
      const started = Date.now()
      const [compared, exported] = await Promise.all([
        app.request('/v1/query', {
          method: 'POST',
          headers: auth,
          body: JSON.stringify({ site_id: 'slow-site', date_range: '7d', metrics: ['visitors'], include: { comparisons: { mode: 'previous_period' } } }),
        }),
        app.request('/v1/export?site_id=slow-site&date_range=7d', { headers: auth }),
      ])
      expect(Date.now() - started).toBeLessThan(5000)
      for (const res of [compared, exported]) {
        expect(res.status).toBe(503)
        expect(((await res.json()) as { code: string }).code).toBe('query_timeout')
      }
    }).finally(() => plain.end())
  })

  test('stats asked while Postgres cannot be reached are answered 503 database_unavailable with Retry-After, not 500', async () => {
    const gone = createSql(`postgres://postgres@127.0.0.1:${await freePort()}/sluice`, { max: 1 })
    for (const res of await Promise.all(asks(appOn(gone)))) {
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBe('5')
      expect(await res.json()).toEqual({ error: expect.stringContaining('cannot be reached'), code: 'database_unavailable' })
    }
    await gone.end()
  })
})
