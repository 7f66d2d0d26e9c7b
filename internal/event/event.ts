// Package event defines what an analytics event is, validates incoming JSON
// against it with valibot, and normalises it into the form the queue carries.
import * as v from 'valibot'
import { parseTimestamp } from './timestamp.ts'

/** A validated event, as it travels through the queue and into Postgres. */
export type Event = {
  event_id: string
  site_id: string
  event_type: string
  path: string | null
  user_id: string | null
  /** ISO 8601 in UTC with milliseconds, e.g. 2025-11-14T10:00:00.000Z. */
  timestamp: string
  /** When the API accepted it, in epoch milliseconds. */
  received_at: number
}

/** One problem with one field, as returned to clients in `details`. */
export type Problem = { field: string; message: string }

export type ParseResult = { ok: true; event: Event } | { ok: false; problems: Problem[] }

export type EventParserOptions = {
  /** How far ahead of the server's clock a timestamp may be. */
  maxFutureMs?: number
  now?: () => number
  newId?: () => string
}

export const SITE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/
export const LIMITS = { site_id: 128, event_type: 64, path: 2048, user_id: 256 } as const
/**
 * path is bounded in UTF-8 bytes, not characters: it is a key of the path rollups, and a
 * btree index row holds at most 2704 bytes. With site_id (128 ASCII bytes) and event_type
 * (64 UTF-16 units, at most 192 bytes) the largest key is about 2400 bytes. A UTF-8 string
 * has at least as many bytes as UTF-16 units, so this bound implies LIMITS.path too.
 */
export const PATH_MAX_BYTES = 2048
const PATH_BYTES_MESSAGE = `path must be at most ${PATH_MAX_BYTES} bytes of UTF-8`
/** True when s fits PATH_MAX_BYTES; counts bytes only when it could be over (three bytes a unit at most). */
const pathFits = (s: string) => s.length * 3 <= PATH_MAX_BYTES || (s.length <= PATH_MAX_BYTES && Buffer.byteLength(s) <= PATH_MAX_BYTES)
const FIELDS = ['site_id', 'event_type', 'timestamp', 'path', 'user_id', 'event_id'] as const

const nulMessage = (field: string) => `${field} must not contain NUL characters`
const surrogateMessage = (field: string) => `${field} must be valid Unicode (it has a lone surrogate)`

/**
 * The text rule of every string Sluice takes, in events and in query parameters: Postgres
 * refuses NUL (0x00) and cannot store a lone surrogate. Returns what is wrong, or null.
 */
export function textProblem(field: string, s: string): string | null {
  if (s.includes('\0')) return nulMessage(field)
  if (!s.isWellFormed()) return surrogateMessage(field)
  return null
}

const wellFormed = (field: string) =>
  [v.check((s: string) => !s.includes('\0'), nulMessage(field)), v.check((s: string) => s.isWellFormed(), surrogateMessage(field))] as const

const text = (field: string, max: number) =>
  v.pipe(v.string(`${field} must be a string`), v.maxLength(max, `${field} must be at most ${max} characters`), ...wellFormed(field))

const required = (field: string, max: number) =>
  v.pipe(
    v.string(`${field} must be a string`),
    v.minLength(1, `${field} must not be empty`),
    v.maxLength(max, `${field} must be at most ${max} characters`),
    ...wellFormed(field),
  )

/** Empty strings and null both mean "not given". */
const optionalText = (field: string, max: number) =>
  v.pipe(
    v.optional(v.nullable(text(field, max)), null),
    v.transform((s) => (s === '' ? null : (s ?? null))),
  )

export const EventSchema = v.object(
  {
    site_id: v.pipe(v.string('site_id must be a string'), v.regex(SITE_ID_PATTERN, 'site_id must be 1-128 characters of A-Z a-z 0-9 . _ : -')),
    event_type: required('event_type', LIMITS.event_type),
    timestamp: v.string('timestamp must be a string'),
    path: v.pipe(
      optionalText('path', LIMITS.path),
      v.check((s) => s === null || pathFits(s), PATH_BYTES_MESSAGE),
    ),
    user_id: optionalText('user_id', LIMITS.user_id),
    event_id: v.optional(v.pipe(v.string('event_id must be a string'), v.uuid('event_id must be a UUID'))),
  },
  'event must be a JSON object',
)

/** Validates one decoded JSON value; on failure, names every problem. */
export function createEventParser(options: EventParserOptions = {}) {
  return createEventParserWith(options, true)
}

function createEventParserWith({ maxFutureMs = 5 * 60_000, now = Date.now, newId = Bun.randomUUIDv7 }: EventParserOptions, useFastPath: boolean) {
  const ahead = maxFutureMs % 60_000 === 0 ? `${maxFutureMs / 60_000} minutes` : `${maxFutureMs / 1000} seconds`
  return function parseEvent(input: unknown): ParseResult {
    const fast = useFastPath ? acceptFast(input, now, maxFutureMs, newId) : null
    if (fast) return { ok: true, event: fast }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return { ok: false, problems: [{ field: 'event', message: 'event must be a JSON object' }] }
    }
    const result = v.safeParse(EventSchema, input)
    const problems: Problem[] = result.success ? [] : result.issues.map(toProblem)
    // The timestamp is checked here rather than in the schema so that "now" is read once per event.
    const raw = (input as { timestamp?: unknown }).timestamp
    let timestamp: string | undefined
    if (typeof raw === 'string') {
      const ts = parseTimestamp(raw)
      if (!ts.ok) problems.push({ field: 'timestamp', message: ts.message })
      else if (ts.ms > now() + maxFutureMs) {
        problems.push({ field: 'timestamp', message: `timestamp must not be more than ${ahead} in the future` })
      } else timestamp = new Date(ts.ms).toISOString()
    }
    if (!result.success || problems.length > 0 || timestamp === undefined) return { ok: false, problems: dedupe(problems) }
    const e = result.output
    return {
      ok: true,
      event: {
        event_id: (e.event_id ?? newId()).toLowerCase(),
        site_id: e.site_id,
        event_type: e.event_type,
        path: e.path,
        user_id: e.user_id,
        timestamp,
        received_at: now(),
      },
    }
  }
}

// Must agree with valibot's uuid() check.
const UUID = /^[\da-f]{8}(?:-[\da-f]{4}){3}-[\da-f]{12}$/iu

/**
 * Whether a value has the shape of a validated Event (as the queue carries it): what a
 * consumer checks before handing an event it did not validate itself to Postgres.
 */
export function isEventShape(x: unknown): x is Event {
  const e = x as Record<string, unknown> | null
  const str = (v: unknown) => typeof v === 'string'
  const optional = (v: unknown) => v === null || str(v)
  return (
    typeof e === 'object' &&
    e !== null &&
    str(e.event_id) &&
    UUID.test(e.event_id as string) &&
    str(e.site_id) &&
    str(e.event_type) &&
    optional(e.path) &&
    optional(e.user_id) &&
    str(e.timestamp) &&
    !Number.isNaN(Date.parse(e.timestamp as string)) &&
    Number.isFinite(e.received_at)
  )
}
const clean = (s: string) => !s.includes('\0') && s.isWellFormed()
const isOptionalText = (x: unknown, max: number): x is string | null | undefined =>
  x === undefined || x === null || (typeof x === 'string' && x.length <= max && clean(x))

/**
 * The same rules as EventSchema plus the timestamp checks, written out by hand for the
 * common case of a valid event: valibot costs more than everything else an event needs.
 * Anything it does not accept goes through valibot, which names the problems; a property
 * test checks that the two always agree.
 */
function acceptFast(input: unknown, now: () => number, maxFutureMs: number, newId: () => string): Event | null {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return null
  const e = input as Record<string, unknown>
  const { site_id, event_type, timestamp, path, user_id, event_id } = e
  if (typeof site_id !== 'string' || !SITE_ID_PATTERN.test(site_id)) return null
  if (typeof event_type !== 'string' || event_type.length === 0 || event_type.length > LIMITS.event_type || !clean(event_type)) return null
  if (!isOptionalText(path, LIMITS.path) || (typeof path === 'string' && !pathFits(path)) || !isOptionalText(user_id, LIMITS.user_id)) return null
  if (event_id !== undefined && (typeof event_id !== 'string' || !UUID.test(event_id))) return null
  if (typeof timestamp !== 'string') return null
  const ts = parseTimestamp(timestamp)
  const t = now()
  if (!ts.ok || ts.ms > t + maxFutureMs) return null
  return {
    event_id: ((event_id as string | undefined) ?? newId()).toLowerCase(),
    site_id,
    event_type,
    path: (path as string | null | undefined) || null,
    user_id: (user_id as string | null | undefined) || null,
    timestamp: new Date(ts.ms).toISOString(),
    received_at: t,
  }
}

/** The valibot path alone, for the test that checks acceptFast agrees with it. */
export function createSchemaParser(options: EventParserOptions = {}) {
  return createEventParserWith(options, false)
}

function toProblem(issue: v.BaseIssue<unknown>): Problem {
  const field = v.getDotPath(issue) ?? ''
  // valibot reports a missing key with the object's message; say what is missing instead.
  if (issue.kind === 'schema' && issue.type === 'object' && field && issue.input === undefined) {
    return { field, message: `${field} is required` }
  }
  return { field: field || 'event', message: issue.message }
}

function dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>()
  const order = (p: Problem) => {
    const i = FIELDS.indexOf(p.field as (typeof FIELDS)[number])
    return i === -1 ? FIELDS.length : i
  }
  return problems
    .filter((p) => {
      const key = `${p.field}\n${p.message}`
      if (seen.has(key)) return false
      seen.add(key)
      return true
    })
    .sort((a, b) => order(a) - order(b))
}
