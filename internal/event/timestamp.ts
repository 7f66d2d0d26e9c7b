const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)$/

export type TimestampResult = { ok: true; ms: number } | { ok: false; message: string }

const FORMAT = 'timestamp must be ISO 8601 with a timezone, e.g. 2025-11-14T10:00:00Z or 2025-11-14T12:00:00+02:00'

/**
 * Parses an ISO 8601 date-time that carries a timezone (Z or an offset) into epoch
 * milliseconds. Rejects impossible dates (2025-02-30) and anything before 1970.
 */
export function parseTimestamp(s: string): TimestampResult {
  const m = ISO_8601.exec(s)
  if (!m) return { ok: false, message: FORMAT }
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((x) => (x === undefined ? 0 : Number(x))) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const fraction = m[7] ? Number(`0.${m[7]}`) * 1000 : 0
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return { ok: false, message: `${FORMAT}; ${s} is not a real time` }
  const local = utc(year, month - 1, day, hour, minute, second) + Math.floor(fraction)
  if (new Date(local).getUTCDate() !== day) return { ok: false, message: `${FORMAT}; ${s} is not a real date` }
  let offsetMinutes = 0
  if (!m[8]) {
    const oh = Number(m[10])
    const om = m[11] ? Number(m[11]) : 0
    if (oh > 23 || om > 59) return { ok: false, message: `${FORMAT}; the offset in ${s} is out of range` }
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om)
  }
  const ms = local - offsetMinutes * 60_000
  if (ms < 0) return { ok: false, message: 'timestamp must not be before 1970-01-01T00:00:00Z' }
  return { ok: true, ms }
}

const CANONICAL = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/**
 * The common case, first: a timestamp already in the form toISOString writes
 * (2025-11-14T10:00:00.000Z, from 1970 on) is its own canonical form, so it needs neither
 * the general pattern nor a Date to be written back. Returns its epoch milliseconds, or null
 * for anything else, impossible dates included, which parseTimestamp then explains.
 */
export function canonicalMs(s: string): number | null {
  if (s.length !== 24 || !CANONICAL.test(s)) return null
  const year = digits(s, 0, 4)
  const month = digits(s, 5, 2)
  const day = digits(s, 8, 2)
  const hour = digits(s, 11, 2)
  const minute = digits(s, 14, 2)
  const second = digits(s, 17, 2)
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null
  const leap = month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  if (day > DAYS_IN_MONTH[month - 1]! + (leap ? 1 : 0)) return null
  return Date.UTC(year, month - 1, day, hour, minute, second, digits(s, 20, 3))
}

/** The number written by `length` ASCII digits of `s` from `at` (already matched as digits). */
function digits(s: string, at: number, length: number): number {
  let n = 0
  for (let i = at; i < at + length; i++) n = n * 10 + s.charCodeAt(i) - 48
  return n
}

/**
 * Date.UTC, except that years 0-99 stay years 0-99: Date.UTC maps them to 1900-1999, which
 * would read 0070 as 1970. The common case keeps the fast path.
 */
function utc(year: number, month: number, day: number, hour: number, minute: number, second: number): number {
  if (year >= 100) return Date.UTC(year, month, day, hour, minute, second)
  const d = new Date(Date.UTC(2000, month, day, hour, minute, second))
  d.setUTCFullYear(year)
  return d.getTime()
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/

/** A real calendar date from 1970 on, written YYYY-MM-DD (midnight UTC). */
export function isCalendarDate(s: string): boolean {
  const m = DATE.exec(s)
  if (!m || Number(m[1]) < 1970) return false
  const d = new Date(`${s}T00:00:00Z`)
  return !Number.isNaN(d.getTime()) && d.getUTCDate() === Number(m[3])
}
