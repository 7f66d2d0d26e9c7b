/** The time buckets of rollups, stats and series: UTC hours, days, months and years. */
export const GRANULARITIES = ['hour', 'day', 'month', 'year'] as const
export type Granularity = (typeof GRANULARITIES)[number]

/** The most buckets one answer's series may hold. */
export const MAX_SERIES_BUCKETS = 10_000

/** The start of the UTC bucket of granularity `g` that holds `d`. */
export function truncate(d: Date, g: Granularity): Date {
  const y = d.getUTCFullYear()
  const m = d.getUTCMonth()
  switch (g) {
    case 'year':
      return new Date(Date.UTC(y, 0, 1))
    case 'month':
      return new Date(Date.UTC(y, m, 1))
    case 'day':
      return new Date(Date.UTC(y, m, d.getUTCDate()))
    case 'hour':
      return new Date(Date.UTC(y, m, d.getUTCDate(), d.getUTCHours()))
  }
}

/** `d` moved by `n` buckets of granularity `g`. */
export function add(d: Date, g: Granularity, n = 1): Date {
  const r = new Date(d)
  if (g === 'year') r.setUTCFullYear(r.getUTCFullYear() + n)
  else if (g === 'month') r.setUTCMonth(r.getUTCMonth() + n)
  else if (g === 'day') r.setUTCDate(r.getUTCDate() + n)
  else r.setUTCHours(r.getUTCHours() + n)
  return r
}

/** How many buckets of `g` the range [from, to) touches, counting no further than just past MAX_SERIES_BUCKETS. */
export function countBuckets(from: Date, to: Date, g: Granularity): number {
  let n = 0
  for (let b = truncate(from, g); b < to && n <= MAX_SERIES_BUCKETS; b = add(b, g)) n++
  return n
}
