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
 * year_over_year: the same dates a year earlier (29 February becomes the 28th). A range
 * still in progress (it holds `today` and goes on after it: "month", "year") is compared
 * with as much of the other period as has passed of its own: this month to date with the
 * same days of the month before, not with all of it.
 */
export function comparisonDates([from, to]: Dates, mode: Comparison, today?: string): Dates {
  const shift = comparisonShift([from, to], mode)
  const inProgress = today !== undefined && from <= today && today < to
  if (mode === 'previous_period' && !(from === monthStart(from) && to === monthEnd(to))) {
    return [shift(from), inProgress ? shift(today) : plusDays(from, -1)]
  }
  return [shift(from), shift(inProgress ? today : to)]
}

/** How a date moves to its place in the comparison period. */
function comparisonShift([from, to]: Dates, mode: Comparison): (date: string) => string {
  if (mode === 'year_over_year') return (d) => plusMonths(d, -12)
  if (from === monthStart(from) && to === monthEnd(to)) {
    const months = (Number(to.slice(0, 4)) - Number(from.slice(0, 4))) * 12 + Number(to.slice(5, 7)) - Number(from.slice(5, 7)) + 1
    return (d) => (d === monthEnd(d) ? monthEnd(plusMonths(d, -months)) : plusMonths(d, -months))
  }
  const days = (ms(to) - ms(from)) / DAY_MS + 1
  return (d) => plusDays(d, -days)
}

/** The instants [from, to) that the dates cover in `tz`: from the start of the first local day to that of the day after the last. */
export function datesToRange([from, to]: Dates, tz: string): [Date, Date] {
  return [dayStart(from, tz), dayStart(plusDays(to, 1), tz)]
}
