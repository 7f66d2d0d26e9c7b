import { afterAll, describe, expect, test } from 'bun:test'
import { silentLogger } from '../log/log.ts'
import { createBackpressure } from '../queue/backpressure.ts'
import { createQueue } from '../queue/queue.ts'
import { createRegistry } from '../sites/registry.ts'
import { createSites } from '../sites/sites.ts'
import { createTokens } from '../sites/tokens.ts'
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

describe('a body shorter than its declared length', () => {
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

describe('a Content-Length that is not one number', () => {
  test('is a 400 naming it, and bodies of every size still fit afterwards', async () => {
    const app = appWith({})
    const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: (req) => app.fetch(req) })
    try {
      const body = JSON.stringify(valid)
      // Bun passes a header sent twice with one value on as "n, n".
      const twice = await rawRequest(
        server.port!,
        `POST /event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nContent-Length: ${body.length}\r\n\r\n`,
        body,
      )
      expect(twice.text).toStartWith('HTTP/1.1 400')
      expect(twice.text).toContain('"code":"invalid_content_length"')
      // It left nothing behind in the gate: a body over the small-body share is still taken.
      const batch = Array.from({ length: 80 }, (_, i) => ({ ...valid, path: `/${'x'.repeat(200)}/${i}` }))
      expect(JSON.stringify(batch).length).toBeGreaterThan(16 * 1024)
      const res = await fetch(`http://127.0.0.1:${server.port}/events`, {
        method: 'POST',
        body: JSON.stringify(batch),
        headers: { 'content-type': 'application/json' },
      })
      expect(res.status).toBe(202)
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

describe('sites, tokens and shared links', () => {
  const ADMIN = 'env-admin-token'
  const stops: AbortController[] = []
  afterAll(() => {
    for (const s of stops) s.abort()
  })
  /** An API replica: its own app and its own registry cache on the shared database. */
  async function replica(ingest: Partial<IngestOptions> = {}, refreshMs = 200) {
    const registry = createRegistry({ sql: env.db.sql, log: silentLogger() }, { refreshMs })
    const stop = new AbortController()
    stops.push(stop)
    await registry.start(stop.signal)
    const app = createApp(
      {
        ...{ queue: createQueue(env.r.redis, env.r.queue), store: createStore(env.db.sql), log: silentLogger(), checks: {} },
        ...{ registry, sites: createSites(env.db.sql), tokens: createTokens(env.db.sql) },
      },
      { ingest: { ...base, ...ingest }, statsToken: 'stats-token', adminToken: ADMIN },
    )
    return { app, registry }
  }
  const call = async (app: ReturnType<typeof createApp>, method: string, path: string, token: string | null, body?: unknown): Promise<Response> =>
    app.request(path, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    })
  const reads = (app: ReturnType<typeof createApp>, site: string, token: string | null) =>
    Promise.all([
      call(app, 'POST', '/v1/query', token, { site_id: site, date_range: 'day', metrics: ['events'] }).then((r) => r.status),
      call(app, 'GET', `/v1/stats?site_id=${site}&from=2025-03-01`, token).then((r) => r.status),
      call(app, 'GET', `/stats?site_id=${site}`, token).then((r) => r.status),
    ])
  const created = async (res: Response) => {
    expect(res.status).toBe(201)
    return (await res.json()) as { id: string; token: string; path?: string }
  }

  test('the admin API adds, shows, updates, lists and removes sites, and names what is wrong with a bad one', async () => {
    const { app } = await replica()
    const site = { site_id: 'adm-site', domains: ['adm.example'], timezone: 'Europe/Berlin' }
    expect(await (await call(app, 'POST', '/v1/admin/sites', ADMIN, site)).json()).toMatchObject({ ...site, public: false })
    expect((await call(app, 'POST', '/v1/admin/sites', ADMIN, site)).status).toBe(409)
    const bad = await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: 'adm-bad', timezone: 'Nowhere/Land' })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toMatchObject({ code: 'invalid_site', details: [{ field: 'timezone' }] })
    expect((await call(app, 'POST', '/v1/admin/sites', ADMIN, undefined)).status).toBe(400)
    expect(await (await call(app, 'PATCH', '/v1/admin/sites/adm-site', ADMIN, { public: true })).json()).toMatchObject({ public: true })
    expect((await (await call(app, 'GET', '/v1/admin/sites', ADMIN)).json()) as unknown[]).toContainEqual(expect.objectContaining({ site_id: 'adm-site' }))
    expect((await call(app, 'GET', '/v1/admin/sites/adm-none', ADMIN)).status).toBe(404)
    expect(await (await call(app, 'DELETE', '/v1/admin/sites/adm-site', ADMIN)).json()).toMatchObject({ site_id: 'adm-site', deleted: { events: 0 } })
    expect((await call(app, 'GET', '/v1/admin/sites/adm-site', ADMIN)).status).toBe(404)
  })

  test('a NUL or an impossible id in any admin route is a 4xx naming it, never a 500', async () => {
    const { app } = await replica()
    expect((await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: 'nul-site' })).status).toBe(201)
    const cases: [string, string, unknown, number, string][] = [
      ['GET', '/v1/admin/sites/%00', undefined, 404, 'site_not_found'],
      ['PATCH', '/v1/admin/sites/%00', { public: true }, 404, 'site_not_found'],
      ['DELETE', '/v1/admin/sites/%00', undefined, 404, 'site_not_found'],
      ['GET', '/v1/admin/tokens?site_id=%00', undefined, 400, 'invalid_query'],
      ['DELETE', '/v1/admin/tokens/%00', undefined, 404, 'token_not_found'],
      ['DELETE', '/v1/admin/tokens/tok_%00', undefined, 404, 'token_not_found'],
      ['POST', '/v1/admin/tokens', { kind: 'read', site_id: 'nul-site', name: 'a\u0000b' }, 400, 'invalid_token_request'],
      ['POST', '/v1/admin/tokens', { kind: 'read', site_id: 'nul-site', name: '\ud800' }, 400, 'invalid_token_request'],
    ]
    for (const [method, path, body, status, code] of cases) {
      const res = await call(app, method, path, ADMIN, body)
      expect({ method, path, status: res.status, body: await res.json() }).toEqual({ method, path, status, body: expect.objectContaining({ code }) })
    }
  })

  test('the admin API answers a caller without an admin token 401 before it reads the body, and refuses a site named "." or ".."', async () => {
    const { app } = await replica()
    const broken = await app.request('/v1/admin/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"kind":' })
    expect(broken.status).toBe(401)
    // Nor does the size of its body: 401, not 413, on every admin route with a body.
    const big = JSON.stringify({ site_id: 'x', name: 'n'.repeat(70_000) })
    for (const [method, path] of [
      ['POST', '/v1/admin/tokens'],
      ['POST', '/v1/admin/sites'],
      ['PATCH', '/v1/admin/sites/x'],
    ] as const) {
      const res = await app.request(path, { method, headers: { 'content-type': 'application/json', 'content-length': String(big.length) }, body: big })
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 401 })
    }
    expect((await call(app, 'POST', '/v1/admin/tokens', 'sl_wrong', { kind: 'read' })).status).toBe(401)
    for (const site_id of ['.', '..']) {
      const res = await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id })
      expect({ site_id, status: res.status, body: await res.json() }).toEqual({
        site_id,
        status: 400,
        body: expect.objectContaining({ code: 'invalid_site', details: [{ field: 'site_id', message: expect.stringContaining('cannot be') }] }),
      })
    }
    expect((await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: '...' })).status).toBe(201)
  })

  test('a site token reads its site and gets 403 on another; STATS_TOKEN reads every site; a wrong token gets 401', async () => {
    const { app, registry } = await replica()
    for (const s of ['tok-a', 'tok-b']) expect((await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: s })).status).toBe(201)
    const t = await created(await call(app, 'POST', '/v1/admin/tokens', ADMIN, { kind: 'read', site_id: 'tok-a', name: 'client a' }))
    await registry.refresh()
    expect(await reads(app, 'tok-a', t.token)).toEqual([200, 200, 200])
    expect(await reads(app, 'tok-b', t.token)).toEqual([403, 403, 403])
    expect(await reads(app, 'tok-b', 'stats-token')).toEqual([200, 200, 200])
    expect(await reads(app, 'tok-a', 'sl_wrong')).toEqual([401, 401, 401])
    expect(await reads(app, 'tok-a', null)).toEqual([401, 401, 401])
  })

  test('a public site is read without a token, and only it', async () => {
    const { app, registry } = await replica()
    await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: 'pub-site', public: true })
    await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: 'priv-site' })
    await registry.refresh()
    expect(await reads(app, 'pub-site', null)).toEqual([200, 200, 200])
    expect(await reads(app, 'priv-site', null)).toEqual([401, 401, 401])
  })

  test('the admin API refuses read tokens and links, and a site admin manages only its own site', async () => {
    const { app, registry } = await replica()
    for (const s of ['own-site', 'other-site']) await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: s })
    const read = await created(await call(app, 'POST', '/v1/admin/tokens', ADMIN, { kind: 'read' }))
    const link = await created(await call(app, 'POST', '/v1/admin/tokens', ADMIN, { kind: 'link', site_id: 'own-site' }))
    const siteAdmin = await created(await call(app, 'POST', '/v1/admin/tokens', ADMIN, { kind: 'admin', site_id: 'own-site' }))
    await registry.refresh()
    for (const token of [read.token, link.token]) {
      for (const [method, path, body] of [
        ['GET', '/v1/admin/sites'],
        ['POST', '/v1/admin/sites', { site_id: 'sneaky' }],
        ['PATCH', '/v1/admin/sites/own-site', { public: true }],
        ['DELETE', '/v1/admin/sites/own-site'],
        ['POST', '/v1/admin/tokens', { kind: 'admin' }],
        ['DELETE', `/v1/admin/tokens/${siteAdmin.id}`],
      ] as const) {
        const res = await call(app, method, path, token, body)
        expect({ method, path, status: res.status }).toEqual({ method, path, status: 403 })
        expect(((await res.json()) as { code: string }).code).toBe('forbidden')
      }
    }
    expect((await call(app, 'PATCH', '/v1/admin/sites/own-site', siteAdmin.token, { timezone: 'Asia/Tokyo' })).status).toBe(200)
    expect((await call(app, 'PATCH', '/v1/admin/sites/other-site', siteAdmin.token, { public: true })).status).toBe(403)
    expect((await call(app, 'POST', '/v1/admin/sites', siteAdmin.token, { site_id: 'more' })).status).toBe(403)
    const removing = await call(app, 'DELETE', '/v1/admin/sites/own-site', siteAdmin.token)
    expect(removing.status).toBe(403)
    expect(((await removing.json()) as { error: string }).error).toBe('only an admin token of every site may do this; this token manages only site "own-site"')
    const byLink = await call(app, 'GET', '/v1/admin/sites', link.token)
    expect(((await byLink.json()) as { error: string }).error).toBe('the admin API needs an admin token; this one is a shared link')
    // ?site_id= narrows the list for an admin of every site too.
    const one = (await (await call(app, 'GET', '/v1/admin/sites?site_id=other-site', ADMIN)).json()) as { site_id: string }[]
    expect(one.map((s) => s.site_id)).toEqual(['other-site'])
    // The scheme in any case, and a tab after it.
    const lower = await app.request('/v1/admin/sites', { headers: { authorization: `bearer\t${ADMIN}` } })
    expect(lower.status).toBe(200)
    expect((await call(app, 'POST', '/v1/admin/tokens', siteAdmin.token, { kind: 'read' })).status).toBe(403)
    expect((await call(app, 'POST', '/v1/admin/tokens', siteAdmin.token, { kind: 'read', site_id: 'own-site' })).status).toBe(201)
    const listed = (await (await call(app, 'GET', '/v1/admin/tokens', siteAdmin.token)).json()) as { site_id: string }[]
    expect(new Set(listed.map((t) => t.site_id))).toEqual(new Set(['own-site']))
    expect((await call(app, 'GET', '/v1/admin/sites', null)).status).toBe(401)
  })

  test('a revoked token fails on every replica within REGISTRY_REFRESH_MS of its revocation', async () => {
    const refreshMs = 1000
    const replicas = await Promise.all([replica({}, refreshMs), replica({}, refreshMs), replica({}, refreshMs)])
    const [{ app }] = replicas
    await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: 'rev-site' })
    const t = await created(await call(app, 'POST', '/v1/admin/tokens', ADMIN, { kind: 'read', site_id: 'rev-site' }))
    await Bun.sleep(refreshMs + 200)
    for (const r of replicas) expect(await reads(r.app, 'rev-site', t.token)).toEqual([200, 200, 200])
    expect((await call(app, 'DELETE', `/v1/admin/tokens/${t.id}`, ADMIN)).status).toBe(200)
    const revokedAt = performance.now()
    const refusedAfter = await Promise.all(
      replicas.map(async (r) => {
        while ((await reads(r.app, 'rev-site', t.token))[0] !== 401) await Bun.sleep(20)
        return performance.now() - revokedAt
      }),
    )
    // The documented delay: one refresh period, plus the reload itself.
    for (const ms of refusedAfter) expect(ms).toBeLessThan(refreshMs + 500)
    for (const r of replicas) expect(await reads(r.app, 'rev-site', t.token)).toEqual([401, 401, 401])
  })

  test('a shared link reads only its own site, manages nothing, and reads nothing once revoked', async () => {
    const { app, registry } = await replica()
    for (const s of ['link-site', 'link-other']) await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: s })
    const link = await created(await call(app, 'POST', '/v1/admin/tokens', ADMIN, { kind: 'link', site_id: 'link-site', name: 'for the client' }))
    expect(link.path).toBe(`/share/link-site#link=${link.token}`)
    await registry.refresh()
    expect(await reads(app, 'link-site', link.token)).toEqual([200, 200, 200])
    expect(await reads(app, 'link-other', link.token)).toEqual([403, 403, 403])
    expect((await call(app, 'GET', '/v1/admin/tokens', link.token)).status).toBe(403)
    const page = await app.request('/share/link-site')
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('<title>Sluice dashboard</title>')
    expect((await call(app, 'DELETE', `/v1/admin/tokens/${link.id}`, ADMIN)).status).toBe(200)
    await registry.refresh()
    expect(await reads(app, 'link-site', link.token)).toEqual([401, 401, 401])
  })

  test('with SITES_REGISTRY an event for an unknown or removed site gets 403 site_not_allowed, and a site domains feed the origin check', async () => {
    const { app, registry } = await replica({ registry: true })
    await call(app, 'POST', '/v1/admin/sites', ADMIN, { site_id: 'ing-site', domains: ['ing.example'] })
    await registry.refresh()
    const event = { ...valid, site_id: 'ing-site' }
    expect((await post(app, '/event', event)).status).toBe(202)
    expect((await post(app, '/event', event, { origin: 'https://www.ing.example' })).status).toBe(202)
    const foreign = await post(app, '/event', event, { origin: 'https://elsewhere.example' })
    expect(foreign.status).toBe(403)
    expect(((await foreign.json()) as { code: string }).code).toBe('origin_not_allowed')
    const unknown = await post(app, '/event', { ...valid, site_id: 'ing-unknown' })
    expect(unknown.status).toBe(403)
    expect(await unknown.json()).toEqual({ error: 'site_id "ing-unknown" is not registered here', code: 'site_not_allowed' })
    await call(app, 'DELETE', '/v1/admin/sites/ing-site', ADMIN)
    await registry.refresh()
    expect(((await (await post(app, '/event', event)).json()) as { code: string }).code).toBe('site_not_allowed')
    const batch = await post(app, '/events', [valid, event])
    expect(batch.status).toBe(400)
  })
})
