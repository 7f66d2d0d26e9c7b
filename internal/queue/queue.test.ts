import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import Redis from 'ioredis'
import type { Event } from '../event/event.ts'
import { startRedis } from '../testkit/servers.ts'
import { createTestRedis, type TestRedis } from '../testkit/testkit.ts'
import { eventsOf } from './entry.ts'
import { createQueue, type Queue } from './queue.ts'

let r: TestRedis
let queue: Queue
let reader: Redis

const event = (n: number): Event => ({
  event_id: `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`,
  site_id: 's',
  event_type: 'pageview',
  path: '/',
  user_id: null,
  timestamp: '2025-11-14T10:00:00.000Z',
  received_at: 1,
})

beforeEach(async () => {
  r = await createTestRedis()
  queue = createQueue(r.redis, r.queue)
  reader = r.redis.duplicate()
  await queue.ensureGroup()
})
afterEach(async () => {
  reader.disconnect()
  await r.cleanup()
})

describe('queue', () => {
  test('delivers enqueued events to a consumer, in order, with their content intact', async () => {
    const results = await queue.enqueue([event(1), event(2), event(3)])
    expect(results.every((x) => x.ok)).toBe(true)
    const { entries } = await queue.read(reader, 'c1', { count: 10, blockMs: 10 })
    expect(entries.flatMap((e) => eventsOf(e))).toEqual([event(1), event(2), event(3)])
  })

  test('packs events that arrive together into shared entries of at most maxEntryEvents', async () => {
    const small = createQueue(r.redis, { ...r.queue, maxEntryEvents: 2 })
    const [a, b] = await Promise.all([small.enqueue([event(1), event(2), event(3)]), small.enqueue([event(4)])])
    expect([...a, ...b].every((x) => x.ok)).toBe(true)
    const { entries } = await queue.read(reader, 'c1', { count: 10, blockMs: 10 })
    expect(entries.map((e) => eventsOf(e).map((x) => x.event_id.slice(-1)))).toEqual([
      ['1', '2'],
      ['3', '4'],
    ])
    // Each caller learns the entry its own events went into.
    expect([...a, ...b].map((x) => x.ok && x.id)).toEqual([entries[0]!.id, entries[0]!.id, entries[1]!.id, entries[1]!.id])
  })

  test('reads entries written one event per entry by earlier versions', async () => {
    await r.redis.xadd(r.queue.stream, '*', 'e', JSON.stringify(event(7)))
    const { entries, bad } = await queue.read(reader, 'c1', { count: 10, blockMs: 10 })
    expect(bad).toEqual([])
    expect(eventsOf(entries[0]!)).toEqual([event(7)])
  })

  test('splits entries between consumers of the group', async () => {
    await queue.enqueue([event(1)])
    await queue.enqueue([event(2)])
    const a = await queue.read(reader, 'a', { count: 1, blockMs: 10 })
    const b = await queue.read(reader, 'b', { count: 1, blockMs: 10 })
    expect([...a.entries, ...b.entries].flatMap((e) => eventsOf(e).map((x) => x.event_id)).sort()).toEqual([event(1).event_id, event(2).event_id])
  })

  test('keeps unacknowledged entries pending, and gives them back to the same consumer after a restart', async () => {
    await queue.enqueue([event(1)])
    await queue.read(reader, 'c1', { count: 10, blockMs: 10 })
    expect((await queue.depth()).pending).toBe(1)
    expect((await queue.claim('c2', { owner: 'c2', minIdleMs: 0, count: 10 })).entries).toEqual([])
    const again = await queue.claim('c1', { owner: 'c1', minIdleMs: 0, count: 10 })
    expect(again.entries.flatMap((e) => eventsOf(e))).toEqual([event(1)])
  })

  test('removes acknowledged entries from the stream', async () => {
    await queue.enqueue([event(1), event(2)])
    const { entries } = await queue.read(reader, 'c1', { count: 10, blockMs: 10 })
    await queue.ack(entries.map((e) => e.id))
    expect(await queue.depth()).toMatchObject({ length: 0, pending: 0, oldestPendingAgeMs: 0, oldestEntryAgeMs: 0 })
  })

  test('lets another consumer claim entries that sat idle too long', async () => {
    await queue.enqueue([event(1)])
    await queue.read(reader, 'dead', { count: 10, blockMs: 10 })
    expect((await queue.claim('alive', { minIdleMs: 60_000, count: 10 })).entries).toEqual([])
    await Bun.sleep(30)
    const claimed = await queue.claim('alive', { minIdleMs: 20, count: 10 })
    expect(claimed.entries.flatMap((e) => eventsOf(e))).toEqual([event(1)])
  })

  test('hands back an entry delivered too many times as bad, saying so', async () => {
    await queue.enqueue([event(1)])
    await queue.enqueue([event(2)])
    await queue.read(reader, 'a', { count: 1, blockMs: 10 }) // event 1: delivery 1
    await queue.claim('b', { minIdleMs: 0, count: 10 }) // delivery 2
    await queue.read(reader, 'c', { count: 1, blockMs: 10 }) // event 2: delivery 1
    const d = await queue.claim('d', { minIdleMs: 0, count: 10, maxDeliveries: 2 })
    expect(d.entries.flatMap((e) => eventsOf(e))).toEqual([event(2)])
    expect(d.bad).toEqual([{ id: expect.any(String), fields: ['n', '1', 'b', JSON.stringify([event(1)])], reason: 'delivered 3 times without being stored' }])
  })

  test('reports depth: length, pending, undelivered, and the ages of the oldest pending entry and of the oldest entry', async () => {
    await queue.enqueue([event(1)])
    await Bun.sleep(20)
    const secondAt = Date.now()
    for (const n of [2, 3]) await queue.enqueue([event(n)])
    // The first entry is delivered and acknowledged; of the two left, the older is delivered, the other not.
    const first = await queue.read(reader, 'c1', { count: 1, blockMs: 10 })
    await queue.ack(first.entries.map((e) => e.id))
    await queue.read(reader, 'c1', { count: 1, blockMs: 10 })
    await Bun.sleep(5)
    const d = await queue.depth()
    expect(d).toMatchObject({ length: 2, pending: 1, undelivered: 1, deadLetters: 0 })
    expect(d.oldestPendingAgeMs).toBeGreaterThan(0)
    expect(d.oldestEntryAgeMs).toBeGreaterThanOrEqual(d.oldestPendingAgeMs)
    // The entry left longest is the second: the first, older, is stored and gone.
    expect(d.oldestEntryAgeMs).toBeLessThanOrEqual(Date.now() - secondAt + 1)
  })

  test('sets aside entries it cannot read, and leaves the rest unparsed until needed', async () => {
    await r.redis.xadd(r.queue.stream, '*', 'x', 'y')
    await r.redis.xadd(r.queue.stream, '*', 'n', 'lots', 'b', '[]')
    await r.redis.xadd(r.queue.stream, '*', 'n', '1', 'b', '[{not json]')
    await r.redis.xadd(r.queue.stream, '*', 'e', JSON.stringify({ ...event(9), timestamp: 'not a time' }))
    const { entries, bad } = await queue.read(reader, 'c1', { count: 10, blockMs: 10 })
    expect(bad.map((b) => b.reason)).toEqual([expect.stringContaining('no "b" or "e" field'), expect.stringContaining('"n" is not a count')])
    expect(entries).toHaveLength(2)
    expect(() => eventsOf(entries[0]!)).toThrow('undecodable entry')
    expect(() => eventsOf(entries[1]!)).toThrow('not a valid event')
    await queue.deadLetter(bad)
    expect(await queue.depth()).toMatchObject({ length: 2, pending: 2, deadLetters: 2 })
    const letters = await queue.deadLetters()
    expect(letters[0]!.fields).toMatchObject({ reason: expect.stringContaining('no "b" or "e" field'), x: 'y' })
    // Run again (a lost reply, a retry): no letter twice.
    await queue.deadLetter(bad)
    expect(await queue.depth()).toMatchObject({ deadLetters: 2 })
  })

  test('writes a letter for every event of one entry that Postgres refused, once each', async () => {
    await queue.enqueue([event(1), event(2)])
    const { entries } = await queue.read(reader, 'c1', { count: 10, blockMs: 10 })
    const id = entries[0]!.id
    const letters = [1, 2].map((n) => ({ id, fields: ['e', JSON.stringify(event(n))], reason: `refused ${n}` }))
    await queue.deadLetter(letters)
    await queue.deadLetter(letters)
    expect((await queue.deadLetters()).map((l) => l.fields.reason)).toEqual(['refused 1', 'refused 2'])
  })

  test('gives back a delivery it releases: the count one lower, the idle time kept, and nothing of an entry acknowledged meanwhile', async () => {
    for (let n = 0; n < 3; n++) await queue.enqueue([event(n)])
    const { entries } = await queue.read(reader, 'c1', { count: 10, blockMs: 10 })
    const ids = entries.map((e) => e.id)
    await Bun.sleep(30)
    await queue.ack([ids[2]!])
    await queue.release('c1', ids)
    const pending = (await r.redis.xpending(r.queue.stream, r.queue.group, '-', '+', 10, 'c1')) as [string, string, number, number][]
    expect(pending.map(([id, , , n]) => [id, n])).toEqual([
      [ids[0]!, 0],
      [ids[1]!, 0],
    ])
    for (const [, , idle] of pending) expect(idle).toBeGreaterThanOrEqual(30)
  })

  test('does not write the events of a request abandoned before the flush, and writes the others of that turn', async () => {
    const gone = new AbortController()
    const abandoned = queue.enqueue([event(1)], gone.signal)
    const kept = queue.enqueue([event(2)], new AbortController().signal)
    gone.abort() // the connection closed before the writer's turn
    expect((await abandoned)[0]).toMatchObject({ ok: false, error: expect.any(Error) })
    expect((await kept)[0]).toMatchObject({ ok: true })
    const stored = (await r.redis.xrange(r.queue.stream, '-', '+')).flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!) as Event[])
    expect(stored.map((e) => e.event_id)).toEqual([event(2).event_id])
  })

  test('creating the group twice is harmless', async () => {
    await queue.ensureGroup()
    await queue.ensureGroup()
  })
})

describe('consumers', () => {
  test('are pruned when idle long enough with nothing pending, and kept otherwise', async () => {
    await queue.enqueue([event(1)])
    await queue.read(reader, 'holding', { count: 10, blockMs: 10 })
    await r.redis.xgroup('CREATECONSUMER', r.queue.stream, r.queue.group, 'empty-handed')
    await Bun.sleep(20)
    expect(await queue.pruneConsumers(10)).toEqual(['empty-handed'])
    expect(await queue.pruneConsumers(60_000)).toEqual([])
  })

  test('an idle consumer that reads while others prune keeps what it read: the prune never deletes a consumer holding entries', async () => {
    for (let n = 1; n <= 20; n++) await queue.enqueue([event(n)])
    const names = Array.from({ length: 30 }, (_, i) => `idle-${i}`)
    for (const name of names) await r.redis.xgroup('CREATECONSUMER', r.queue.stream, r.queue.group, name)
    await Bun.sleep(20)
    // Every idle consumer comes back to read one entry while the prune runs: whichever it
    // reached first, a consumer holding an entry must be there, holding it, afterwards.
    const [pruned] = await Promise.all([
      queue.pruneConsumers(10),
      (async () => {
        for (const name of names.slice(0, 20)) await queue.read(reader, name, { count: 1, blockMs: 10 })
      })(),
    ])
    const pending = (await r.redis.xpending(r.queue.stream, r.queue.group)) as [number, string, string, [string, string][] | null]
    expect(pending[0]).toBe(20)
    const owners = new Map((pending[3] ?? []).map(([name, n]) => [name, Number(n)]))
    const consumers = ((await r.redis.xinfo('CONSUMERS', r.queue.stream, r.queue.group)) as unknown[][]).map((c) => String(c[1]))
    for (const [name, n] of owners) {
      expect(consumers).toContain(name)
      expect(n).toBe(1)
    }
    // A consumer pruned before its read comes back with it (XREADGROUP makes it again).
    expect(pruned.length).toBeGreaterThan(0)
  })
})

describe('a Redis over its maxmemory (noeviction)', () => {
  test('still takes acknowledgements, dead letters and released deliveries, and a worker starting gets past its consumer group', async () => {
    const server = await startRedis({ aof: false })
    const redis = new Redis(server.url)
    try {
      const full = createQueue(redis, { stream: 'oom', group: 'g', deadLetterStream: 'oom:dead' })
      await full.ensureGroup()
      for (let n = 0; n < 2000; n++) await full.enqueue([{ ...event(n), path: `/${'p'.repeat(200)}` }])
      const own = redis.duplicate()
      const { entries } = await full.read(own, 'w', { count: 5000, blockMs: 10 })
      own.disconnect()
      expect(entries).toHaveLength(2000)
      // Full: memory over the limit, and nothing may be evicted.
      const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1])
      await redis.config('SET', 'maxmemory-policy', 'noeviction')
      await redis.config('SET', 'maxmemory', String(used - 200_000))
      expect(await redis.xadd('oom', '*', 'e', '{}').catch((err: Error) => err.message)).toContain('OOM')
      await full.ensureGroup() // the group is there: nothing to create
      // A worker stopping gives its deliveries back.
      await full.release('w', [entries[1]!.id])
      expect(((await redis.xpending('oom', 'g', '-', '+', 5, 'w')) as [string, string, number, number][]).find(([id]) => id === entries[1]!.id)![3]).toBe(0)
      // An entry set aside, its fields as they were (text in any script), goes to the dead letters too.
      const [first, ...rest] = entries
      await full.deadLetter([{ id: first!.id, fields: ['x', 'é \u{1F600} "q"'], reason: 'not an event: ünïcode' }])
      const [letter] = await full.deadLetters()
      expect(letter!.fields).toMatchObject({ source_id: first!.id, reason: 'not an event: ünïcode', x: 'é \u{1F600} "q"' })
      await full.ack(rest.map((e) => e.id))
      expect(await redis.xlen('oom')).toBe(0)
      expect(((await redis.xpending('oom', 'g')) as unknown[])[0]).toBe(0)
      // Freed: writes go through again.
      expect(await redis.xadd('oom', '*', 'e', '{}')).toMatch(/^\d+-\d+$/)
    } finally {
      redis.disconnect()
      await server.destroy()
    }
  }, 30_000)
})
