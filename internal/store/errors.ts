/**
 * SQLSTATE classes that mean "this data can never be stored or counted", as opposed to
 * "try again later": 22 data exception, 23 integrity constraint violation, and 54 program
 * limit exceeded (e.g. a value too large for an index row).
 */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && /^(22|23|54)/.test(code)
}

/**
 * A stats range that needs hourly rollup buckets older than the hourly retention keeps
 * (ROLLUP_HOUR_RETENTION_DAYS). Day, month and year buckets are kept forever.
 */
export class HourlyDetailExpiredError extends Error {
  readonly code = 'hourly_detail_expired'
  constructor(readonly keptSince: Date) {
    super(
      `hourly detail is kept only from ${keptSince.toISOString()}; before that, ranges must start and end on UTC day boundaries and granularity cannot be hour`,
    )
    this.name = 'HourlyDetailExpiredError'
  }
}
