// Date ranges as calendar dates in a site's time zone: presets resolved against today
// there, the comparison periods of a range, and the instants a range of dates covers.
import { dayStart } from '../sites/timezone.ts'

export type Dates = [string, string]
export const COMPARISONS = ['previous_period', 'year_over_year'] as const
export type Comparison = (typeof COMPARISONS)[number]

const DAY_MS = 86_400_000
const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10)
const ms = (date: string) => Date.parse(`${date}T00:00:00Z`)
export const plusDays = (date: string, n: number) => iso(ms(date) + n * DAY_MS)
/** The date `n` months from `date`, on the same day of the month or the month's last. */
export function plusMonths(date: string, n: number): string {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number]
  const first = new Date(Date.UTC(y, m - 1 + n, 1))
  const last = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 1, 0)).getUTCDate()
  return iso(Date.UTC(first.getUTCFullYear(), first.getUTCMonth(), Math.min(d, last)))
}
const monthStart = (date: string) => `${date.slice(0, 7)}-01`
const monthEnd = (date: string) => plusDays(plusMonths(monthStart(date), 1), -1)

/**
 * The inclusive dates of a preset (or an explicit pair) on the calendar whose today is
 * `today`: "day" is today, "7d" and "30d" end today, "month", "12mo" and "year" are the
 * calendar periods holding today; "all" is null.
 */
export function presetDates(range: string | readonly [string, string], today: string): Dates | null {
  if (Array.isArray(range)) return [range[0]!, range[1]!]
  switch (range) {
    case 'day':
      return [today, today]
    case '7d':
      return [plusDays(today, -6), today]
    case '30d':
      return [plusDays(today, -29), today]
    case 'month':
      return [monthStart(today), monthEnd(today)]
    case '12mo':
      return [plusMonths(monthStart(today), -11), monthEnd(today)]
    case 'year':
      return [`${today.slice(0, 4)}-01-01`, `${today.slice(0, 4)}-12-31`]
    default:
      return null
  }
}

/**
 * The period a range is compared with. previous_period: the as many whole months just
 * before when the range is whole calendar months, else as many days just before;
 * year_over_year: the same dates a year earlier (29 February becomes the 28th).
 */
export function comparisonDates([from, to]: Dates, mode: Comparison): Dates {
  if (mode === 'year_over_year') return [plusMonths(from, -12), plusMonths(to, -12)]
  if (from === monthStart(from) && to === monthEnd(to)) {
    const months = (Number(to.slice(0, 4)) - Number(from.slice(0, 4))) * 12 + Number(to.slice(5, 7)) - Number(from.slice(5, 7)) + 1
    return [plusMonths(from, -months), plusDays(from, -1)]
  }
  const days = (ms(to) - ms(from)) / DAY_MS + 1
  return [plusDays(from, -days), plusDays(from, -1)]
}

/** The instants [from, to) that the dates cover in `tz`: from the start of the first local day to that of the day after the last. */
export function datesToRange([from, to]: Dates, tz: string): [Date, Date] {
  return [dayStart(from, tz), dayStart(plusDays(to, 1), tz)]
}
