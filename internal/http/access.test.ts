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
    const res = await app().request('/event', {
      method: 'POST',
      body: JSON.stringify(valid),
      headers: { 'content-type': 'text/plain;charset=UTF-8', origin: 'https://shop.example' },
    })
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

describe('a body shorter than its declared length', () => {
  /** Sends raw HTTP over one socket and resolves with what came back and when, or '' if the server closed without answering. */
  function rawRequest(port: number, head: string, body: string): Promise<{ text: string; ms: number }> {
    const started = performance.now()
    return new Promise((resolve) => {
      let text = ''
      Bun.connect({
        hostname: '127.0.0.1',
        port,
        socket: {
          open: (sock) => void sock.write(head + body),
          data: (sock, chunk) => {
            text += chunk.toString()
            if (text.includes('\r\n\r\n{') && text.trimEnd().endsWith('}')) {
              sock.end()
              resolve({ text, ms: performance.now() - started })
            }
          },
          close: () => resolve({ text, ms: performance.now() - started }),
        },
      })
    })
  }

  test.each([[10], [20_000]])('of %p bytes gets a 408 within the body timeout', async (declared) => {
    const app = appWith({ bodyTimeoutMs: 500 })
    const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: (req) => app.fetch(req) })
    try {
      const sent = '{"site_id":"a"'.slice(0, Math.min(10, declared - 5))
      const res = await rawRequest(
        server.port!,
        `POST /event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n`,
        sent,
      )
      expect(res.text).toStartWith('HTTP/1.1 408')
      expect(res.text).toContain('"code":"body_timeout"')
      expect(res.ms).toBeLessThan(500 + 250 + 500)
    } finally {
      server.stop(true)
    }
  })
})

describe('the in-flight gate', () => {
  test('holds requests while their bytes fit and refuses the rest at once, keeping a quarter of the budget for small bodies', async () => {
    const { createGate } = await import('./limits.ts')
    const gate = createGate(100_000, { smallBytes: 1000 })
    const hold = (n: number) => {
      const h = gate.hold(n)
      return h.grow(n) ? h : null
    }
    const large = hold(70_000)
    expect(large).not.toBeNull()
    // Large bodies may use three quarters (75,000): another 10,000 does not fit.
    expect(hold(10_000)).toBeNull()
    // Small ones may use the rest.
    const smalls = Array.from({ length: 30 }, () => hold(1000))
    expect(smalls.every(Boolean)).toBe(true)
    expect(hold(1000)).toBeNull()
    expect(gate.inUse()).toBe(100_000)
    large!.release()
    large!.release() // releasing twice changes nothing
    expect(gate.inUse()).toBe(30_000)
    for (const h of smalls) h!.release()
    // A lone body over the whole budget still gets in, and the small quarter stays open beside it.
    const lone = hold(500_000)
    expect(lone).not.toBeNull()
    expect(hold(10_000)).toBeNull()
    const beside = Array.from({ length: 25 }, () => hold(1000))
    expect(beside.every(Boolean)).toBe(true)
    expect(hold(1000)).toBeNull()
    lone!.release()
    for (const h of beside) h!.release()
    expect(gate.inUse()).toBe(0)
  })

  test('counts a body of unknown length as it arrives, small until it outgrows that, then as a whole large body', async () => {
    const { createGate } = await import('./limits.ts')
    const gate = createGate(100_000, { smallBytes: 1000 })
    const h = gate.hold(60_000)
    expect(h.grow(400)).toBe(true)
    expect(h.grow(900)).toBe(true)
    expect(gate.inUse()).toBe(900)
    expect(h.grow(1500)).toBe(true)
    expect(gate.inUse()).toBe(60_000)
    expect(h.grow(50_000)).toBe(true)
    expect(gate.inUse()).toBe(60_000)
    const other = gate.hold(20_000)
    expect(other.grow(2000)).toBe(false)
    h.release()
    expect(gate.inUse()).toBe(0)
  })
})

describe('turns at parsing large bodies', () => {
  test('let bodies in while their bytes fit, queue the rest in order, and let a lone large one through', async () => {
    const { createTurns } = await import('./limits.ts')
    const turns = createTurns(100)
    const order: string[] = []
    const a = turns.take(60) as () => void
    const noted = (name: string, turn: Promise<() => void>) =>
      turn.then((release) => {
        order.push(name)
        return release
      })
    const b = noted('b', turns.take(50) as Promise<() => void>)
    const c = noted('c', turns.take(10) as Promise<() => void>)
    expect(turns.inUse()).toBe(60)
    a()
    const [rb, rc] = await Promise.all([b, c])
    expect(order).toEqual(['b', 'c'])
    rb()
    rc()
    const big = turns.take(500)
    expect(typeof big).toBe('function')
    ;(big as () => void)()
    expect(turns.inUse()).toBe(0)
  })
})
