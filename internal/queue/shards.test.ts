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
