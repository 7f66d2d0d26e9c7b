import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Redis from 'ioredis'
import { createRedis } from '../clients/clients.ts'
import { createIdentity } from '../identity/identity.ts'
import { silentLogger } from '../log/log.ts'
import { createQueue } from '../queue/queue.ts'
import { createStore } from '../store/store.ts'
import { startRedis } from '../testkit/servers.ts'
import { eventually, isolated } from '../testkit/testkit.ts'
import { createApp } from './http.ts'
import { createIngest } from './ingest.ts'

// The API gives an event sent without user_id the day's visitor id (a hash of site, IP and
// user agent); these tests go through createApp and createIngest on the real Redis.

const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
const DAY = 86_400_000
const ingestOptions = { bodyLimitBytes: 65536, batchMax: 10, maxFutureMs: 300_000, trustProxy: true, forwardToken: 'forward-secret' }
const event = (more: Record<string, unknown> = {}) => ({ site_id: 'id-site', event_type: 'pageview', path: '/', timestamp: new Date().toISOString(), ...more })
const env = isolated()
let second: Redis
beforeAll(() => {
  second = new Redis(env.r.url)
})
afterAll(() => second.disconnect())

let streams = 0
/** An API instance of its own Redis connection, writing to a stream of the test's, with salts under `keyPrefix`. */
function instance(redis: Redis, keyPrefix: string, stream: string, now?: () => number) {
  const store = createStore(env.db.sql)
  const identity = createIdentity({ redis }, { keyPrefix, now })
  return createApp(
    { queue: createQueue(redis, { ...env.r.queue, stream }), identity, store, log: silentLogger(), checks: {} },
    { ingest: ingestOptions, statsToken: 'token' },
  )
}
function setup(now?: () => number) {
  const n = ++streams
  const stream = `${env.r.queue.stream}:${n}`
  const keyPrefix = `${env.r.queue.stream}:identity${n}`
  const stored = async () => (await env.r.redis.xrange(stream, '-', '+')).flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!) as Record<string, unknown>[])
  return { stream, keyPrefix, stored, a: instance(env.r.redis, keyPrefix, stream, now), b: instance(second, keyPrefix, stream, now) }
}
const send = (app: ReturnType<typeof createApp>, path: string, body: unknown, headers: Record<string, string> = {}) =>
  app.request(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } })
const browser = (ip: string, ua = CHROME) => ({ 'x-forwarded-for': ip, 'user-agent': ua })

describe('visitor ids without cookies', () => {
  test('the same browser on the same day gets the same user_id from two API instances sharing the Redis prefix', async () => {
    const { a, b, stored } = setup()
    const [ra, rb] = await Promise.all([send(a, '/event', event(), browser('81.2.69.142')), send(b, '/event', event(), browser('81.2.69.142'))])
    expect([ra.status, rb.status]).toEqual([202, 202])
    expect((await send(b, '/events', [event({ path: '/pricing' })], browser('81.2.69.142'))).status).toBe(202)
    const ids = (await stored()).map((e) => e.user_id)
    expect(ids).toHaveLength(3)
    expect(ids[0]).toMatch(/^[A-Za-z0-9_-]{22}$/)
    expect(new Set(ids).size).toBe(1)
  })

  test('the next UTC day the same browser gets a new user_id', async () => {
    let now = Date.now()
    const { a, stored } = setup(() => now)
    await send(a, '/event', event(), browser('81.2.69.142'))
    now += DAY
    await send(a, '/event', event(), browser('81.2.69.142'))
    const [today, tomorrow] = (await stored()).map((e) => e.user_id)
    expect(tomorrow).toBeString()
    expect(tomorrow).not.toBe(today)
  })

  test('different sites, IPs and user agents get different user_ids for the same day', async () => {
    const { a, stored } = setup()
    await send(a, '/event', event(), browser('81.2.69.142'))
    await send(a, '/event', event({ site_id: 'other-site' }), browser('81.2.69.142'))
    await send(a, '/event', event(), browser('81.2.69.143'))
    await send(a, '/event', event(), browser('81.2.69.142', IPHONE))
    const ids = (await stored()).map((e) => e.user_id)
    expect(new Set(ids).size).toBe(4)
  })

  test('a user_id sent by a browser or a server is kept as it is, alone or in a batch', async () => {
    const { a, stored } = setup()
    await send(a, '/event', event({ user_id: 'persisted-42' }), browser('81.2.69.142'))
    await send(a, '/events', [event({ user_id: 'crm-7', ip: '8.8.8.8', user_agent: IPHONE }), event()], {
      authorization: 'Bearer forward-secret',
      'user-agent': 'python-requests/2.31.0',
    })
    const ids = (await stored()).map((e) => e.user_id)
    expect(ids.slice(0, 2)).toEqual(['persisted-42', 'crm-7'])
    expect(ids[2]).toMatch(/^[A-Za-z0-9_-]{22}$/)
  })

  test('a trusted server’s forwarded ip and user_agent give the visitor’s own id, the one their browser gets', async () => {
    const { a, stored } = setup()
    await send(a, '/event', event(), browser('8.8.8.8', IPHONE))
    await send(a, '/events', [event({ ip: '8.8.8.8', user_agent: IPHONE })], { authorization: 'Bearer forward-secret', 'x-forwarded-for': '10.0.0.1' })
    const [direct, forwarded] = await stored()
    expect(forwarded!.user_id).toBe(direct!.user_id)
    expect(JSON.stringify(await stored())).not.toContain('8.8.8.8')
  })
})

describe('when Redis cannot give the day’s salt', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>
  beforeAll(async () => {
    redis = await startRedis({ aof: true })
  }, 30_000)
  afterAll(() => redis?.destroy())

  test('a request that needs the salt gets 503 identity_unavailable with Retry-After and nothing of it is stored; every 202 before survives', async () => {
    const client = createRedis(redis.url, { name: 'visitor-id-test', offlineQueue: false, commandTimeoutMs: 500 })
    await client.connect()
    client.on('error', () => {})
    let now = Date.now()
    const ingest = createIngest(
      {
        queue: createQueue(client, { stream: 's', group: 'g', deadLetterStream: 's:dead' }),
        identity: createIdentity({ redis: client }, { keyPrefix: 'id', now: () => now }),
      },
      ingestOptions,
    )
    const post = (path: string, body: unknown) =>
      ingest[path === '/event' ? 'event' : 'events'](
        new Request(`http://sluice.test${path}`, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json', ...browser('81.2.69.142') },
        }),
      )
    const accepted = (await (await post('/event', event())).json()) as { event_id: string }
    expect(accepted.event_id).toBeString()

    await redis.stop('SIGTERM')
    now += DAY // a new UTC day: the salt is not in memory
    for (const res of [await post('/event', event()), await post('/events', [event(), event({ user_id: 'kept' })])]) {
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBe('1')
      expect(((await res.json()) as { code: string }).code).toBe('identity_unavailable')
    }

    await redis.start()
    const back = await eventually(async () => (await post('/event', event())).status === 202, { timeoutMs: 15_000 })
    expect(back).toBe(true)
    const onStream = (await client.xrange('s', '-', '+')).flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!) as { event_id: string; user_id: string }[])
    expect(onStream[0]!.event_id).toBe(accepted.event_id)
    expect(onStream).toHaveLength(2) // the first and the one after the outage: nothing from the 503s
    expect(onStream[1]!.user_id).not.toBe(onStream[0]!.user_id)
    client.disconnect()
  }, 30_000)
})
