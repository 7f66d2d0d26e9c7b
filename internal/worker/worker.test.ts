import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import type Redis from 'ioredis'
import type { Event } from '../event/event.ts'
import { silentLogger } from '../log/log.ts'
import { createQueue, type Queue } from '../queue/queue.ts'
import { createStore } from '../store/store.ts'
import { createTestDatabase, createTestRedis, eventually, type TestDatabase, type TestRedis } from '../testkit/testkit.ts'
import { createWorker, type WorkerOptions } from './worker.ts'

let db: TestDatabase
let r: TestRedis
let queue: Queue
const readers: Redis[] = []

beforeEach(async () => {
  ;[db, r] = await Promise.all([createTestDatabase(), createTestRedis()])
  queue = createQueue(r.redis, r.queue)
})
afterEach(async () => {
  for (const reader of readers.splice(0)) reader.disconnect()
  await r.cleanup()
  await db.drop()
})

const event = (n: number, o: Partial<Event> = {}): Event => ({
  event_id: `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`,
  site_id: 'w',
  event_type: 'pageview',
  path: '/',
  user_id: `u${n}`,
  timestamp: '2025-11-14T10:00:00.000Z',
  received_at: Date.now(),
  ...o,
})

function startWorker(options: Partial<WorkerOptions> = {}) {
  const reader = r.redis.duplicate()
  readers.push(reader)
  const worker = createWorker({ queue, store: createStore(db.sql), reader, log: silentLogger() }, { consumer: 'w1', blockMs: 50, ...options })
  const controller = new AbortController()
  const done = worker.run(controller.signal)
  const stop = () => {
    controller.abort()
    return done
  }
  return { worker, stop }
}

const storedCount = async () => (await db.sql`select count(*)::int as n from events`)[0]!.n as number

describe('worker', () => {
  test('moves queued events into Postgres in inserts of at most batchSize events, and removes them from the stream', async () => {
    await createQueue(r.redis, { ...r.queue, maxEntryEvents: 10 }).enqueue(Array.from({ length: 50 }, (_, i) => event(i)))
    const { stop } = startWorker({ batchSize: 20 })
    expect(await eventually(async () => (await storedCount()) === 50)).toBe(true)
    const stats = await stop()
    expect(stats).toMatchObject({ stored: 50, duplicates: 0, deadLettered: 0 })
    expect(stats.batches).toBeGreaterThanOrEqual(3)
    expect(await queue.depth()).toMatchObject({ length: 0, pending: 0 })
  })

  test('stores and acknowledges other batches while one insert is held up', async () => {
    await createQueue(r.redis, { ...r.queue, maxEntryEvents: 10 }).enqueue(Array.from({ length: 50 }, (_, i) => event(i)))
    const store = createStore(db.sql)
    let release = () => {}
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const insertEventsJson = async (json: string) => {
      if (json.includes(event(0).event_id)) await held
      return store.insertEventsJson(json)
    }
    const slow = { ...store, insertEventsJson }
    const reader = r.redis.duplicate()
    readers.push(reader)
    const worker = createWorker({ queue, store: slow, reader, log: silentLogger() }, { consumer: 'w1', blockMs: 50, batchSize: 10 })
    const controller = new AbortController()
    const done = worker.run(controller.signal)
    expect(await eventually(async () => (await storedCount()) === 40)).toBe(true)
    expect((await queue.depth()).pending).toBe(1)
    release()
    expect(await eventually(async () => (await storedCount()) === 50)).toBe(true)
    controller.abort()
    expect(await done).toMatchObject({ stored: 50, duplicates: 0 })
    expect(await queue.depth()).toMatchObject({ length: 0, pending: 0 })
  })

  test('after a light read, waits lingerMs before the next, so what arrives meanwhile goes in one statement', async () => {
    const { worker, stop } = startWorker({ lingerMs: 500 })
    await queue.enqueue([event(1)])
    expect(await eventually(async () => (await storedCount()) === 1)).toBe(true)
    for (let n = 2; n <= 11; n++) await queue.enqueue([event(n)])
    expect(await eventually(async () => (await storedCount()) === 11)).toBe(true)
    expect(worker.stats.batches).toBe(2)
    await stop()
  })

  test('stores an event delivered twice once', async () => {
    await queue.enqueue([event(1), event(1), event(2)])
    const { stop } = startWorker()
    await eventually(async () => (await queue.depth()).length === 0)
    const stats = await stop()
    expect(await storedCount()).toBe(2)
    expect(stats.duplicates).toBe(1)
  })

  test('sets aside an event Postgres rejects, with the reason, and still stores the rest of its batch', async () => {
    await queue.enqueue([event(1), event(2, { path: 'has a NUL \u0000' }), event(3)])
    const { stop } = startWorker()
    await eventually(async () => (await queue.depth()).length === 0)
    await stop()
    expect(await storedCount()).toBe(2)
    const letters = await queue.deadLetters()
    expect(letters).toHaveLength(1)
    expect(letters[0]!.fields.reason).toContain('postgres rejected the event')
    expect(JSON.parse(letters[0]!.fields.e!).event_id).toBe(event(2).event_id)
  })

  test('sets aside an entry whose JSON is broken, with the reason, and stores the entries read with it', async () => {
    await queue.ensureGroup()
    await queue.enqueue([event(1)])
    await r.redis.xadd(r.queue.stream, '*', 'n', '2', 'b', '[{"event_id":"broken"')
    await r.redis.xadd(r.queue.stream, '*', 'n', '1', 'b', JSON.stringify([{ ...event(2), event_id: 'not-a-uuid' }]))
    await queue.enqueue([event(3)])
    const { stop } = startWorker()
    await eventually(async () => (await queue.depth()).length === 0)
    await stop()
    expect(await storedCount()).toBe(2)
    expect((await queue.deadLetters()).map((l) => l.fields.reason)).toEqual([
      expect.stringContaining('undecodable entry'),
      expect.stringContaining('not a valid event'),
    ])
  })

  test('sets aside hand-made entries whose array holds something other than events, without stalling the entries behind them', async () => {
    await queue.ensureGroup()
    await queue.enqueue([event(1)])
    for (const b of [
      '[null]',
      '[1]',
      '[[]]',
      JSON.stringify([{ ...event(2), path: { nested: true } }]),
      JSON.stringify([{ ...event(3), received_at: 'soon' }]),
      JSON.stringify([{ ...event(5), timestamp: { at: 1 } }]),
      JSON.stringify([{ ...event(6), event_id: [1] }]),
    ]) {
      await r.redis.xadd(r.queue.stream, '*', 'n', '1', 'b', b)
    }
    await queue.enqueue([event(4)])
    const { stop } = startWorker({ retryBaseMs: 5, retryMaxMs: 20 })
    const drained = await eventually(async () => (await queue.depth()).length === 0, { timeoutMs: 5000 })
    await stop()
    expect(drained).toBe(true)
    expect(await storedCount()).toBe(2)
    const letters = await queue.deadLetters()
    expect(letters).toHaveLength(7)
    for (const letter of letters) expect(letter.fields.reason).toContain('not a valid event')
  })

  test('after a restart under the same name, first stores what it held before', async () => {
    await queue.ensureGroup()
    await queue.enqueue([event(1), event(2)])
    const reader = r.redis.duplicate()
    readers.push(reader)
    await queue.read(reader, 'w1', { count: 10, blockMs: 10 }) // delivered, then the worker "died"
    const { stop } = startWorker({ claimIdleMs: 3_600_000 })
    expect(await eventually(async () => (await storedCount()) === 2)).toBe(true)
    await stop()
    expect((await queue.depth()).pending).toBe(0)
  })

  test('restarts while Postgres fails do not count against the delivery limit: the entries are stored once it is back, none dead-lettered', async () => {
    await queue.enqueue([event(1)])
    await queue.enqueue([event(2)])
    await db.sql`alter table events rename to events_away`
    try {
      for (let restart = 0; restart < 6; restart++) {
        const { stop } = startWorker({ maxDeliveries: 3, stopGraceMs: 50, retryBaseMs: 10, retryMaxMs: 20 })
        expect(await eventually(async () => (await queue.depth()).pending === 2)).toBe(true)
        await Bun.sleep(50) // an insert or two fails
        await stop()
      }
    } finally {
      await db.sql`alter table events_away rename to events`
    }
    const { stop } = startWorker({ maxDeliveries: 3 })
    const drained = await eventually(async () => (await queue.depth()).length === 0)
    await stop()
    expect(drained).toBe(true)
    expect(await storedCount()).toBe(2)
    expect(await queue.deadLetters()).toEqual([])
  }, 30_000)

  test('takes over entries another consumer held longer than the idle limit', async () => {
    await queue.ensureGroup()
    await queue.enqueue([event(1)])
    const reader = r.redis.duplicate()
    readers.push(reader)
    await queue.read(reader, 'crashed-worker', { count: 10, blockMs: 10 })
    const { stop } = startWorker({ claimIdleMs: 1000 })
    expect(await eventually(async () => (await storedCount()) === 1, { timeoutMs: 5000 })).toBe(true)
    await stop()
    expect((await queue.depth()).pending).toBe(0)
  })

  test('moves an entry that keeps failing to the dead-letter stream after the delivery limit, and stores the rest', async () => {
    await queue.ensureGroup()
    await queue.enqueue([event(1)])
    await queue.enqueue([event(2)])
    const reader = r.redis.duplicate()
    readers.push(reader)
    await queue.read(reader, 'crashing-worker', { count: 1, blockMs: 10 }) // event 1 crashed a worker...
    for (let i = 0; i < 2; i++) await queue.claim('crashing-worker', { minIdleMs: 0, count: 10 }) // ...three times
    await Bun.sleep(1000)
    const { stop } = startWorker({ claimIdleMs: 1000, maxDeliveries: 3 })
    expect(await eventually(async () => (await queue.depth()).length === 0, { timeoutMs: 5000 })).toBe(true)
    await stop()
    expect(await storedCount()).toBe(1)
    const letters = await queue.deadLetters()
    expect(letters.map((l) => [JSON.parse(l.fields.b!)[0].event_id, l.fields.reason])).toEqual([[event(1).event_id, 'delivered 4 times without being stored']])
  })

  test('stops under constant load, after storing and acknowledging everything it was delivered', async () => {
    const { stop } = startWorker({ blockMs: 200 })
    let n = 0
    let feeding = true
    const feeder = (async () => {
      while (feeding) {
        await queue.enqueue([event(1000 + n++)])
        await Bun.sleep(2)
      }
    })()
    await eventually(async () => (await storedCount()) > 20)
    const stopped = await Promise.race([stop().then(() => true), Bun.sleep(5000).then(() => false)])
    feeding = false
    await feeder
    expect(stopped).toBe(true)
    expect((await queue.depth()).pending).toBe(0)
  })

  test('returns promptly once stopped, with nothing left pending', async () => {
    const { stop } = startWorker({ blockMs: 200 })
    await queue.enqueue([event(1)])
    await eventually(async () => (await storedCount()) === 1)
    const started = Date.now()
    await stop()
    expect(Date.now() - started).toBeLessThan(2000)
    expect((await queue.depth()).pending).toBe(0)
  })
})
