// IANA time zones, and where a site's local days start in UTC: at the start of the UTC
// hour that holds local midnight, since rollups count by the UTC hour. For zones a whole
// number of hours off UTC that is local midnight itself; for others (Asia/Kolkata, +05:30)
// the day starts up to 59 minutes early (23:30 local in Kolkata).

const formats = new Map<string, Intl.DateTimeFormat>()
function format(tz: string): Intl.DateTimeFormat {
  let f = formats.get(tz)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
    formats.set(tz, f)
  }
  return f
}

/** Whether `tz` names a time zone (an IANA name such as Europe/Berlin, or UTC). */
export function isTimeZone(tz: string): boolean {
  if (tz.length === 0 || tz.length > 64) return false
  try {
    format(tz)
    return true
  } catch {
    return false
  }
}

type Parts = { y: number; m: number; d: number; h: number; min: number; s: number }
function parts(ms: number, tz: string): Parts {
  const p: Record<string, number> = {}
  for (const x of format(tz).formatToParts(new Date(ms))) if (x.type !== 'literal') p[x.type] = Number(x.value)
  return { y: p.year!, m: p.month!, d: p.day!, h: p.hour!, min: p.minute!, s: p.second! }
}

/** The local calendar date (YYYY-MM-DD) of an instant in `tz`. */
export function localDate(ms: number, tz: string): string {
  const p = parts(ms, tz)
  return `${String(p.y).padStart(4, '0')}-${String(p.m).padStart(2, '0')}-${String(p.d).padStart(2, '0')}`
}

/** `tz`'s offset from UTC at an instant, in ms (New York in winter: -5 h). */
function offsetAt(ms: number, tz: string): number {
  const p = parts(ms, tz)
  return Date.UTC(p.y, p.m - 1, p.d, p.h, p.min, p.s) - (ms - (ms % 1000))
}

/**
 * The first instant of the local date `date` (YYYY-MM-DD) in `tz`; after a gap when midnight
 * does not exist there. A date the zone skipped altogether (Samoa's 2011-12-30) lasts no
 * time: it starts where the next day does.
 */
export function localMidnight(date: string, tz: string): number {
  const wall = Date.parse(`${date}T00:00:00Z`)
  // The offsets in force around that wall time; the earliest instant that falls on `date` is
  // midnight, or the end of the gap when a DST change skips midnight.
  const candidates = [-14, 0, 14].map((h) => wall - offsetAt(wall + h * 3_600_000, tz)).filter((t) => localDate(t, tz) === date)
  if (candidates.length === 0) return localMidnight(new Date(wall + 86_400_000).toISOString().slice(0, 10), tz)
  return Math.min(...candidates)
}

/** Where the local day `date` starts for the rollups: the start of the UTC hour holding its local midnight. */
export function dayStart(date: string, tz: string): Date {
  const t = localMidnight(date, tz)
  return new Date(t - (t % 3_600_000))
}

/**
 * The local day an instant counts in, by the same rule: the local date of the last moment
 * of its UTC hour. An event at 18:10 UTC counts in Kolkata's next day (its day started at
 * 18:00 UTC, 23:30 local).
 */
export function dayOf(ms: number, tz: string): string {
  return localDate(ms - (ms % 3_600_000) + 3_599_999, tz)
}
