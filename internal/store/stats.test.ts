import { describe, expect, test } from 'bun:test'
import { plan } from './stats.ts'

const d = (s: string) => new Date(s)

describe('plan', () => {
  test('covers a range with the coarsest aligned buckets', () => {
    expect(plan(d('2024-12-31T22:00:00Z'), d('2026-02-02T03:00:00Z'), null)).toEqual({
      hour: ['2024-12-31T22:00:00.000Z', '2024-12-31T23:00:00.000Z', '2026-02-02T00:00:00.000Z', '2026-02-02T01:00:00.000Z', '2026-02-02T02:00:00.000Z'],
      day: ['2026-02-01T00:00:00.000Z'],
      month: ['2026-01-01T00:00:00.000Z'],
      year: ['2025-01-01T00:00:00.000Z'],
    })
  })

  test('never uses a bucket coarser than the series granularity', () => {
    const p = plan(d('2025-01-01T00:00:00Z'), d('2025-03-01T00:00:00Z'), 'day')
    expect(p.year).toEqual([])
    expect(p.month).toEqual([])
    expect(p.day).toHaveLength(59)
  })

  test('uses months for a year at monthly granularity', () => {
    expect(plan(d('2025-01-01T00:00:00Z'), d('2026-01-01T00:00:00Z'), 'month').month).toHaveLength(12)
  })
})
