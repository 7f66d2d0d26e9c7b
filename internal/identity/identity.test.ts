import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Redis from 'ioredis'
import { createRedis } from '../clients/clients.ts'
import { startRedisCluster } from '../testkit/servers.ts'
import { createTestRedis, freePort, type TestRedis } from '../testkit/testkit.ts'
import { createIdentity, IdentityError, SALT_LIFETIME_MS, type Salt, utcDay } from './identity.ts'

const DAY = 86_400_000
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const startOfToday = Math.floor(Date.now() / DAY) * DAY
let r: TestRedis
let other: Redis
let prefixes = 0
beforeAll(async () => {
  r = await createTestRedis()
  other = new Redis(r.url)
})
afterAll(async () => {
  other.disconnect()
  await r.cleanup()
})

/** A key prefix of the test's own, under the file's Redis prefix. */
const prefix = () => `${r.queue.stream}:identity${++prefixes}`
const resolved = async (s: Salt | Promise<Salt>) => await s

describe('identity', () => {
  test('the same site, IP and user agent get the same id on two instances with their own Redis connections, even when both ask first at once', async () => {
    const keyPrefix = prefix()
    const a = createIdentity({ redis: r.redis }, { keyPrefix })
    const b = createIdentity({ redis: other }, { keyPrefix })
    const [sa, sb] = await Promise.all([resolved(a.salt()), resolved(b.salt())])
    const id = sa.visitorId('site', '81.2.69.142', UA)
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/)
    expect(sb.visitorId('site', '81.2.69.142', UA)).toBe(id)
    expect(sa.day).toBe(utcDay(Date.now()))
  })

  test('the next UTC day gives the same visitor a new id', async () => {
    const keyPrefix = prefix()
    let now = startOfToday + DAY - 1
    const identity = createIdentity({ redis: r.redis }, { keyPrefix, now: () => now, aheadMs: 0 })
    const today = (await resolved(identity.salt())).visitorId('site', '81.2.69.142', UA)
    now += 1
    const tomorrow = await resolved(identity.salt())
    expect(tomorrow.day).toBe(utcDay(startOfToday + DAY))
    expect(tomorrow.visitorId('site', '81.2.69.142', UA)).not.toBe(today)
  })

  test('replicas agree again within recheckMs after Redis loses the salt, whether the old replica or a new one sets it first', async () => {
    const keyPrefix = prefix()
    let now = startOfToday + 1000
    const idOf = async (i: ReturnType<typeof createIdentity>) => (await resolved(i.salt())).visitorId('site', '81.2.69.142', UA)
    const settled = async (i: ReturnType<typeof createIdentity>, want: string) => {
      for (let tries = 0; tries < 200 && (await idOf(i)) !== want; tries++) await Bun.sleep(5)
      return idOf(i)
    }
    const a = createIdentity({ redis: r.redis }, { keyPrefix, now: () => now, recheckMs: 60_000 })
    const before = await idOf(a)
    // Redis loses the key; a new replica starts and makes a salt of its own.
    await r.redis.del(a.keyOf(utcDay(now)))
    const b = createIdentity({ redis: other }, { keyPrefix, now: () => now })
    const fresh = await idOf(b)
    expect(fresh).not.toBe(before)
    // Within recheckMs the old replica still uses its own; past it, it takes up the new one.
    now += 59_000
    expect(await idOf(a)).toBe(before)
    now += 1_000
    expect(await settled(a, fresh)).toBe(fresh)
    // Lost again, and the old replica re-checks first: it puts its salt back, and a replica started after uses it.
    await r.redis.del(a.keyOf(utcDay(now)))
    now += 60_000
    await idOf(a)
    for (let tries = 0; tries < 200 && !(await r.redis.exists(a.keyOf(utcDay(now)))); tries++) await Bun.sleep(5)
    expect(await idOf(createIdentity({ redis: other }, { keyPrefix, now: () => now }))).toBe(fresh)
  })

  test('another site, IP or user agent gives another id', async () => {
    const salt = await resolved(createIdentity({ redis: r.redis }, { keyPrefix: prefix() }).salt())
    const ids = [
      salt.visitorId('site-a', '81.2.69.142', UA),
      salt.visitorId('site-b', '81.2.69.142', UA),
      salt.visitorId('site-a', '81.2.69.143', UA),
      salt.visitorId('site-a', '81.2.69.142', `${UA} Edg/131`),
      salt.visitorId('site-a', '81.2.69.142', null),
    ]
    expect(new Set(ids).size).toBe(ids.length)
  })

  test('once a day’s salt is fetched, every request that day gets it from memory: no promise, no Redis call, even with Redis gone', async () => {
    let calls = 0
    let gone = false
    const call = <T>(f: () => Promise<T>) => {
      calls++
      return gone ? Promise.reject(new Error('Redis is gone')) : f()
    }
    const counting = {
      set: (...args: Parameters<Redis['set']>) => call(() => r.redis.set(...args)),
      getBuffer: (key: string) => call(() => r.redis.getBuffer(key)),
    } as unknown as Redis
    const identity = createIdentity({ redis: counting }, { keyPrefix: prefix(), aheadMs: 0 })
    const first = await Promise.all(Array.from({ length: 50 }, () => resolved(identity.salt())))
    expect(calls).toBe(1) // one SET NX for 50 concurrent requests
    expect(new Set(first).size).toBe(1)
    calls = 0
    gone = true
    for (let i = 0; i < 1000; i++) expect(identity.salt()).toBe(first[0]!)
    expect(calls).toBe(0)
  })

  test('the next day’s salt is fetched shortly before midnight, so the first request after it does not wait', async () => {
    let now = startOfToday + DAY - 20_000
    const identity = createIdentity({ redis: r.redis }, { keyPrefix: prefix(), now: () => now, aheadMs: 30_000 })
    await resolved(identity.salt())
    identity.salt() // within 30 s of midnight: starts fetching tomorrow's
    await Bun.sleep(200)
    now = startOfToday + DAY + 1
    const salt = identity.salt()
    expect(salt).not.toBeInstanceOf(Promise)
    expect((salt as Salt).day).toBe(utcDay(now))
  })

  test('a day’s salt expires 48 h after its UTC day began, so no salt older than 48 h remains in Redis', async () => {
    const keyPrefix = prefix()
    for (const daysAgo of [3, 2, 1, 0]) {
      const identity = createIdentity({ redis: r.redis }, { keyPrefix, now: () => startOfToday - daysAgo * DAY + 3_600_000, aheadMs: 0 })
      await resolved(identity.salt())
    }
    const keys = (await r.redis.keys(`${keyPrefix}:*`)).sort()
    // Days 3 and 2 ago expired (at the start of yesterday and of today); yesterday's lives until tomorrow.
    expect(keys).toEqual([`${keyPrefix}:salt:${utcDay(startOfToday - DAY)}`, `${keyPrefix}:salt:${utcDay(startOfToday)}`])
    for (const key of keys) {
      const dayStart = Date.parse(`${key.slice(-10)}T00:00:00Z`)
      expect(Number(await r.redis.call('PEXPIRETIME', key))).toBe(dayStart + SALT_LIFETIME_MS)
      const ttl = await r.redis.pttl(key)
      expect(ttl).toBeGreaterThan(0)
      expect(ttl).toBeLessThanOrEqual(48 * 3_600_000)
    }
    expect(await r.redis.strlen(keys[1]!)).toBe(32)
  })

  test('when Redis cannot give the salt, the promise rejects with IdentityError, and the next request tries again', async () => {
    const down = createRedis(`redis://127.0.0.1:${await freePort()}`, { name: 'identity-test', offlineQueue: false })
    const broken = createIdentity({ redis: down }, { keyPrefix: prefix() })
    const first = broken.salt()
    expect(first).toBeInstanceOf(Promise)
    await expect(first).rejects.toBeInstanceOf(IdentityError)
    const second = broken.salt() // not cached, and not stuck on the failed promise
    expect(second).not.toBe(first)
    await expect(second).rejects.toThrow(/could not read the salt/)
    down.disconnect()
  })

  test('on a Redis Cluster two instances agree on the salt: it is one key, on whichever node holds its slot', async () => {
    const cluster = await startRedisCluster(3)
    const clients = [0, 1].map(() => createRedis('', { name: 'identity-cluster-test', clusterNodes: cluster.nodes.split(',') }))
    try {
      await Promise.all(clients.map((c) => c.connect()))
      const [a, b] = clients.map((redis) => createIdentity({ redis }, { keyPrefix: 'sluice:identity' }))
      const [sa, sb] = await Promise.all([resolved(a!.salt()), resolved(b!.salt())])
      expect(sb.visitorId('site', '81.2.69.142', UA)).toBe(sa.visitorId('site', '81.2.69.142', UA))
      const keys = cluster.ports.flatMap((port) => cluster.keys(port, 'sluice:identity:*'))
      expect(keys).toEqual([`sluice:identity:salt:${utcDay(Date.now())}`])
    } finally {
      for (const c of clients) c.disconnect()
      await cluster.destroy()
    }
  }, 60_000)
})
