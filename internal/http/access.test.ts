import { describe, expect, test } from 'bun:test'
import { silentLogger } from '../log/log.ts'
import { createBackpressure } from '../queue/backpressure.ts'
import { createQueue } from '../queue/queue.ts'
import { createStore } from '../store/store.ts'
import { createTestRedis, isolated } from '../testkit/testkit.ts'
import { createApp } from './http.ts'
import type { IngestOptions } from './ingest.ts'
import { createRateLimiter } from './limits.ts'

const env = isolated()

const base: IngestOptions = { bodyLimitBytes: 65536, batchMax: 100, maxFutureMs: 300_000 }
const valid = { site_id: 'allowed-site', event_type: 'pageview', timestamp: '2025-11-14T10:00:00Z' }
const appWith = (ingest: Partial<IngestOptions>, backpressure: ReturnType<typeof createBackpressure> | null = null) =>
  createApp(
    { queue: createQueue(env.r.redis, env.r.queue), backpressure, store: createStore(env.db.sql), log: silentLogger(), checks: {} },
    { ingest: { ...base, ...ingest }, statsToken: 't' },
  )
const post = (app: ReturnType<typeof createApp>, path: string, body: unknown, headers: Record<string, string> = {}) =>
  app.request(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } })

describe('registered sites', () => {
  const app = () => appWith({ allowedSites: ['allowed-site'] })
  test('accept events for a registered site', async () => {
    expect((await post(app(), '/event', valid)).status).toBe(202)
  })
  test('refuse an event for another site with 403', async () => {
    const res = await post(app(), '/event', { ...valid, site_id: 'someone-else' })
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual({ error: 'site_id "someone-else" is not registered here', code: 'site_not_allowed' })
  })
  test('reject just the unregistered events of a batch', async () => {
    const res = await post(app(), '/events', [valid, { ...valid, site_id: 'other' }])
    expect(res.status).toBe(207)
    const body = (await res.json()) as { results: { status: string }[] }
    expect(body.results.map((x) => x.status)).toEqual(['accepted', 'rejected'])
  })
})

describe('allowed origins and CORS', () => {
  const app = () => appWith({ allowedOrigins: ['https://shop.example'] })
  test('accept a sendBeacon-style text/plain POST from an allowed origin, with CORS headers', async () => {
    const res = await app().request('/event', { method: 'POST', body: JSON.stringify(valid), headers: { 'content-type': 'text/plain;charset=UTF-8', origin: 'https://shop.example' } })
    expect(res.status).toBe(202)
    expect(res.headers.get('access-control-allow-origin')).toBe('https://shop.example')
  })
  test('refuse a browser request from another origin with 403', async () => {
    const res = await post(app(), '/event', valid, { origin: 'https://evil.example' })
    expect(res.status).toBe(403)
    expect(((await res.json()) as { code: string }).code).toBe('origin_not_allowed')
  })
  test('accept server-to-server requests, which send no Origin', async () => {
    expect((await post(app(), '/event', valid)).status).toBe(202)
  })
  test('answer a preflight for an allowed origin', async () => {
    const res = await app().request('/events', {
      method: 'OPTIONS',
      headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    })
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe('https://shop.example')
    expect(res.headers.get('access-control-allow-methods')).toContain('POST')
  })
  test('allow any origin when none are configured', async () => {
    const res = await post(appWith({}), '/event', valid, { origin: 'https://anyone.example' })
    expect(res.status).toBe(202)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
  })
})

describe('rate limit', () => {
  test('answers 429 with Retry-After once a client IP spends its burst, counting every event of a batch', async () => {
    const app = appWith({ rateLimitPerSecond: 1, rateLimitBurst: 3, trustProxy: true })
    const from = (ip: string) => ({ 'x-forwarded-for': `10.0.0.99, ${ip}` })
    expect((await post(app, '/events', [valid, valid], from('203.0.113.7'))).status).toBe(202)
    expect((await post(app, '/event', valid, from('203.0.113.7'))).status).toBe(202)
    const res = await post(app, '/event', valid, from('203.0.113.7'))
    expect(res.status).toBe(429)
    expect(res.headers.get('retry-after')).toBe('1')
    expect(((await res.json()) as { code: string }).code).toBe('rate_limited')
    expect((await post(app, '/event', valid, from('198.51.100.1'))).status).toBe(202)
  })

  test('refills at the configured rate', () => {
    let now = 0
    const take = createRateLimiter({ perSecond: 10, burst: 10, now: () => now })
    expect(take('a', 10).ok).toBe(true)
    expect(take('a', 1).ok).toBe(false)
    now = 150
    expect(take('a', 1).ok).toBe(true)
  })
})

describe('backpressure', () => {
  test('sheds ingest with 503 and Retry-After while the backlog is over the limit, and recovers below it', async () => {
    const own = await createTestRedis()
    const bp = createBackpressure(own.redis, own.queue.stream, { maxBacklog: 3, refreshMs: 0 })
    const app = createApp(
      { queue: createQueue(own.redis, own.queue), backpressure: bp, store: createStore(env.db.sql), log: silentLogger(), checks: {} },
      { ingest: base, statsToken: 't' },
    )
    for (let i = 0; i < 3; i++) expect((await post(app, '/event', valid)).status).toBe(202)
    await bp.check()
    const res = await post(app, '/event', valid)
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(await res.json()).toEqual({ error: 'the queue holds 3 unprocessed entries (limit 3); retry later', code: 'queue_full' })
    await own.redis.del(own.queue.stream)
    await bp.check()
    expect((await post(app, '/event', valid)).status).toBe(202)
    await own.cleanup()
  })
})

describe('a slow client', () => {
  test('gets 408 when its body does not arrive in time, and holds up nobody meanwhile', async () => {
    const app = appWith({ bodyTimeoutMs: 300, inFlightBytes: 1024 })
    let enqueued = false
    const trickle = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"site_id":'))
        enqueued = true // and never more
      },
    })
    const slow = app.request('/event', { method: 'POST', body: trickle, headers: { 'content-type': 'application/json' }, duplex: 'half' } as RequestInit)
    expect(enqueued).toBe(true)
    expect((await post(app, '/event', valid)).status).toBe(202)
    const res = await slow
    expect(res.status).toBe(408)
    expect(((await res.json()) as { code: string }).code).toBe('body_timeout')
  })
})

describe('the in-flight gate', () => {
  test('lets requests in while their bytes fit, queues the rest in order, and lets a lone large one through', async () => {
    const { createGate } = await import('./limits.ts')
    const gate = createGate(100)
    const order: string[] = []
    const a = gate.acquire(60) as () => void
    const b = (gate.acquire(50) as Promise<() => void>).then((r) => (order.push('b'), r))
    const c = (gate.acquire(10) as Promise<() => void>).then((r) => (order.push('c'), r))
    expect(gate.inUse()).toBe(60)
    a()
    const [rb, rc] = await Promise.all([b, c])
    expect(order).toEqual(['b', 'c'])
    expect(gate.inUse()).toBe(60)
    rb()
    rc()
    const big = gate.acquire(500)
    expect(typeof big).toBe('function')
    ;(big as () => void)()
    expect(gate.inUse()).toBe(0)
  })
})
