import { describe, expect, test } from 'bun:test'
import calculateSlot from 'cluster-key-slot'
import { shardNames } from './shards.ts'

describe('shard names', () => {
  test('keep the plain stream name for one shard on a single Redis', () => {
    expect(shardNames('sluice:events', 1, false)).toEqual([{ stream: 'sluice:events', deadLetterStream: 'sluice:events:dead' }])
  })

  test('put each shard and its dead-letter stream in one slot, and spread shards evenly over the slots', () => {
    const names = shardNames('sluice:events', 6, true)
    expect(names).toHaveLength(6)
    names.forEach(({ stream, deadLetterStream }, i) => {
      expect(stream).toMatch(/^\{sluice:events:\d+\.\d+\}$/)
      expect(calculateSlot(deadLetterStream)).toBe(calculateSlot(stream))
      expect(calculateSlot(stream)).toBeGreaterThanOrEqual(Math.floor((i * 16384) / 6))
      expect(calculateSlot(stream)).toBeLessThan(Math.floor(((i + 1) * 16384) / 6))
    })
  })
})

describe('the sharded queue', () => {
  test('replays a dead letter by id only when exactly one shard holds that id', async () => {
    const { createTestRedis } = await import('../testkit/testkit.ts')
    const { createShardedQueue } = await import('./shards.ts')
    const r = await createTestRedis()
    const q = createShardedQueue(r.redis, { stream: r.queue.stream, group: 'g', shards: 2, cluster: false })
    const [a, b] = q.shards
    const event = JSON.stringify([
      { event_id: crypto.randomUUID(), site_id: 's', event_type: 'x', path: null, user_id: null, timestamp: '2025-11-14T10:00:00.000Z', received_at: 1 },
    ])
    await r.redis.xadd(a!.deadLetterStream, '5-1', 'n', '1', 'b', event, 'reason', 'test')
    await r.redis.xadd(b!.deadLetterStream, '5-1', 'n', '1', 'b', event, 'reason', 'test')
    await r.redis.xadd(b!.deadLetterStream, '6-1', 'n', '1', 'b', event, 'reason', 'test')
    expect(await q.replay(['5-1', '6-1', '7-1'])).toEqual({
      replayed: ['6-1'],
      skipped: [
        { id: '5-1', reason: "the id is in 2 shards' dead-letter streams; use replay --all" },
        { id: '7-1', reason: 'no such dead letter' },
      ],
    })
    expect(await r.redis.xlen(b!.stream)).toBe(1)
    await r.cleanup()
  })

  test('lists the dead letters of a shard of an earlier QUEUE_SHARDS, and replays them onto the current shards', async () => {
    const { createTestRedis } = await import('../testkit/testkit.ts')
    const { createShardedQueue } = await import('./shards.ts')
    const r = await createTestRedis()
    const q = createShardedQueue(r.redis, { stream: r.queue.stream, group: 'g', shards: 1, cluster: false })
    const old = shardNames(r.queue.stream, 3, false)[2]!
    const event = JSON.stringify([
      { event_id: crypto.randomUUID(), site_id: 's', event_type: 'x', path: null, user_id: null, timestamp: '2025-11-14T10:00:00.000Z', received_at: 1 },
    ])
    await r.redis.xadd(old.deadLetterStream, '7-1', 'n', '1', 'b', event, 'reason', 'test')
    await r.redis.xadd(old.deadLetterStream, '8-1', 'n', '1', 'b', event, 'reason', 'test')
    expect((await q.deadLetters()).map((l) => [l.id, l.stream])).toEqual([
      ['7-1', old.deadLetterStream],
      ['8-1', old.deadLetterStream],
    ])
    expect(await q.strandedDeadLetters()).toEqual([{ stream: old.deadLetterStream, length: 2 }])
    expect(await q.replay(['8-1'])).toEqual({ replayed: ['8-1'], skipped: [] })
    expect(await q.replay('all')).toEqual({ replayed: ['7-1'], skipped: [] })
    expect(await r.redis.xlen(old.deadLetterStream)).toBe(0)
    expect(await r.redis.xlen(old.stream)).toBe(0)
    expect(await r.redis.xlen(q.streams[0]!)).toBe(2)
    await r.cleanup()
  })
})
