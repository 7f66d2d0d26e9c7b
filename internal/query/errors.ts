/**
 * A query the kept data cannot answer for its range: answered 422 with `code`, never with a
 * number that would be wrong.
 * - needs_raw_events: two dimensions at once (or an hourly breakdown with a dimension) need raw
 *   events, which are kept only RAW_RETENTION_HOURS; the range reaches before them.
 * - dimensions_not_recorded: the range reaches before this install counted dimensions (events
 *   rolled up before the upgrade that added them).
 * - hourly_detail_expired: hourly rollups past ROLLUP_HOUR_RETENTION_DAYS.
 * - visits_one_dimension: visit metrics (and entry_page, exit_page) are counted by one
 *   dimension at a time, among the visit dimensions (not props).
 * - visits_one_value: visit metrics filtered by path or event_type (a visit has several)
 *   take one value with `is`.
 * - visits_whole_days: visit metrics by a dimension are counted per day.
 * - visits_not_recorded: the range reaches before this install counted visits.
 */
export const REFUSAL_CODES = [
  'needs_raw_events',
  'dimensions_not_recorded',
  'hourly_detail_expired',
  'visits_one_dimension',
  'visits_one_value',
  'visits_whole_days',
  'visits_not_recorded',
] as const
export type RefusalCode = (typeof REFUSAL_CODES)[number]

export class QueryRefusedError extends Error {
  constructor(
    readonly code: RefusalCode,
    message: string,
  ) {
    super(message)
    this.name = 'QueryRefusedError'
  }
}
