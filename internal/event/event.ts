// Package event defines what an analytics event is, validates incoming JSON
// against it with valibot, and normalises it into the form the queue carries.
import { isIP } from 'node:net'
import * as v from 'valibot'
import { canonicalMs, parseTimestamp } from './timestamp.ts'

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
} & Partial<Dimensions>

/**
 * What the API derives or takes for each event besides its core fields: absent or null
 * when unknown. `referrer` is the referring site's host (never its full URL), `props` a flat
 * object whose values are all strings (see propValue).
 */
export type Dimensions = {
  referrer: string | null
  source: string | null
  channel: string | null
  utm_source: string | null
  utm_medium: string | null
  utm_campaign: string | null
  utm_content: string | null
  utm_term: string | null
  country: string | null
  browser: string | null
  os: string | null
  device: string | null
  props: Record<string, string> | null
}

/** The five UTM fields, taken as sent and stored as they are. */
export const UTM_FIELDS = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term'] as const

/**
 * What a sender gives about the visit that is used to enrich the event but never stored:
 * the full referrer URL, the screen width, and (from a trusted server only) the visitor's
 * IP address and user agent.
 */
export type Context = {
  referrer: string | null
  screen_width: number | null
  /** The name (never the value) of the ad click ID the landing page's URL carried: see AD_CLICK_PARAMS. */
  click_id_param: AdClickParam | null
  ip: string | null
  user_agent: string | null
}

/**
 * The ad click IDs that Google Ads (gclid, gbraid, wbraid) and Microsoft Ads (msclkid) add to
 * a landing page's URL. The tracker sends which one the page's URL carries as
 * `click_id_param`, so that an ad click counts as paid; the ID itself is never sent.
 */
export const AD_CLICK_PARAMS = ['gclid', 'gbraid', 'wbraid', 'msclkid'] as const
export type AdClickParam = (typeof AD_CLICK_PARAMS)[number]
const CLICK_PARAM_MESSAGE = `click_id_param must be one of ${AD_CLICK_PARAMS.join(', ')} (the name of the URL parameter, not its value)`
const isAdClickParam = (x: unknown): x is AdClickParam => (AD_CLICK_PARAMS as readonly unknown[]).includes(x)

/** One problem with one field, as returned to clients in `details`. */
export type Problem = { field: string; message: string }

export type ParseResult = { ok: true; event: Event; context: Context } | { ok: false; problems: Problem[] }

export type EventParserOptions = {
  /** How far ahead of the server's clock a timestamp may be. */
  maxFutureMs?: number
  now?: () => number
  newId?: () => string
  /**
   * Whether `ip` and `user_agent` may be given in the event: only a trusted server may speak
   * for its visitors (the API allows it with INGEST_FORWARD_TOKEN), or a browser could claim
   * any country and any device.
   */
  allowForwarded?: boolean
}

export const SITE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/
export const LIMITS = {
  site_id: 128,
  event_type: 64,
  path: 2048,
  user_id: 256,
  referrer: 2048,
  utm: 256,
  user_agent: 1024,
  props: 30,
  prop_key: 64,
  prop_value: 256,
  screen_width: 100_000,
} as const
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
const FIELDS = [
  'site_id',
  'event_type',
  'timestamp',
  'path',
  'user_id',
  'event_id',
  'referrer',
  ...UTM_FIELDS,
  'screen_width',
  'click_id_param',
  'props',
  'ip',
  'user_agent',
] as const
const FORWARD_MESSAGE = (field: string) =>
  `${field} is accepted only from a trusted server: send Authorization: Bearer <INGEST_FORWARD_TOKEN> (a browser's own IP and user agent are read from the request)`

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
    // Absent (or null): the time the API received the event.
    timestamp: v.optional(v.nullable(v.string('timestamp must be a string'))),
    path: v.pipe(
      optionalText('path', LIMITS.path),
      v.check((s) => s === null || pathFits(s), PATH_BYTES_MESSAGE),
    ),
    user_id: optionalText('user_id', LIMITS.user_id),
    event_id: v.optional(v.pipe(v.string('event_id must be a string'), v.uuid('event_id must be a UUID'))),
    referrer: optionalText('referrer', LIMITS.referrer),
    utm_source: optionalText('utm_source', LIMITS.utm),
    utm_medium: optionalText('utm_medium', LIMITS.utm),
    utm_campaign: optionalText('utm_campaign', LIMITS.utm),
    utm_content: optionalText('utm_content', LIMITS.utm),
    utm_term: optionalText('utm_term', LIMITS.utm),
    screen_width: v.optional(
      v.nullable(
        v.pipe(
          v.number('screen_width must be a number'),
          v.integer('screen_width must be a whole number'),
          v.minValue(0, 'screen_width must not be negative'),
          v.maxValue(LIMITS.screen_width, `screen_width must be at most ${LIMITS.screen_width}`),
        ),
      ),
    ),
    click_id_param: v.pipe(
      v.optional(v.nullable(v.union([v.literal(''), v.picklist(AD_CLICK_PARAMS)], CLICK_PARAM_MESSAGE)), null),
      v.transform((s) => (s === '' ? null : (s ?? null))),
    ),
    props: v.optional(
      v.nullable(
        v.pipe(
          // valibot's record takes an array as an object of its indexes.
          v.custom<Record<string, unknown>>((x) => typeof x === 'object' && x !== null && !Array.isArray(x), 'props must be a flat JSON object'),
          v.record(
            v.pipe(
              v.string(),
              v.minLength(1, 'props keys must not be empty'),
              v.maxLength(LIMITS.prop_key, `props keys must be at most ${LIMITS.prop_key} characters`),
              ...wellFormed('props keys'),
            ),
            v.union(
              [
                v.pipe(
                  v.string(),
                  v.maxLength(LIMITS.prop_value, `props values must be at most ${LIMITS.prop_value} characters`),
                  ...wellFormed('props values'),
                ),
                v.pipe(v.number(), v.finite('props values must be finite numbers')),
                v.boolean(),
              ],
              'props values must be strings, numbers or booleans (no objects, arrays or null)',
            ),
            'props must be a flat JSON object',
          ),
          v.check((o) => Object.keys(o).length <= LIMITS.props, `props must have at most ${LIMITS.props} keys`),
        ),
      ),
    ),
    ip: v.optional(
      v.nullable(
        v.pipe(
          v.string('ip must be a string'),
          v.check((s) => isIP(s) !== 0, 'ip must be an IPv4 or IPv6 address'),
        ),
      ),
    ),
    user_agent: optionalText('user_agent', LIMITS.user_agent),
  },
  'event must be a JSON object',
)

/** Keys valibot's record skips (they could pollute prototypes): refused outright, never silently dropped. */
const RESERVED_KEYS = ['__proto__', 'prototype', 'constructor']
const RESERVED_MESSAGE = `props keys must not be ${RESERVED_KEYS.join(', ')}`

/**
 * How a property value is stored: strings as they are, numbers in their JSON form (1.5,
 * 10, 1e+21), booleans as "true" or "false". Every value is then a string, so filters and
 * breakdowns treat {"plan": 1} and {"plan": "1"} alike.
 */
export const propValue = (x: string | number | boolean): string => (typeof x === 'string' ? x : String(x))

function propsOf(input: Record<string, string | number | boolean> | null | undefined): Record<string, string> | null {
  if (!input) return null
  const out: Record<string, string> = Object.create(null)
  let n = 0
  for (const key in input) {
    out[key] = propValue(input[key]!)
    n++
  }
  return n ? out : null
}

/** Validates one decoded JSON value; on failure, names every problem. */
export function createEventParser(options: EventParserOptions = {}) {
  return createEventParserWith(options, true)
}

function createEventParserWith(
  { maxFutureMs = 5 * 60_000, now = Date.now, newId = Bun.randomUUIDv7, allowForwarded = false }: EventParserOptions,
  useFastPath: boolean,
) {
  const ahead = maxFutureMs % 60_000 === 0 ? `${maxFutureMs / 60_000} minutes` : `${maxFutureMs / 1000} seconds`
  return function parseEvent(input: unknown): ParseResult {
    const fast = useFastPath ? acceptFast(input, now, maxFutureMs, newId, allowForwarded) : null
    if (fast) return fast
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return { ok: false, problems: [{ field: 'event', message: 'event must be a JSON object' }] }
    }
    const result = v.safeParse(EventSchema, input)
    const problems: Problem[] = result.success ? [] : result.issues.map(toProblem)
    // The timestamp is checked here rather than in the schema so that "now" is read once per event.
    const raw = (input as { timestamp?: unknown }).timestamp
    const receivedAt = now()
    let timestamp: string | undefined
    if (raw === undefined || raw === null) timestamp = new Date(receivedAt).toISOString()
    else if (typeof raw === 'string') {
      const ts = parseTimestamp(raw)
      if (!ts.ok) problems.push({ field: 'timestamp', message: ts.message })
      else if (ts.ms > receivedAt + maxFutureMs) {
        problems.push({ field: 'timestamp', message: `timestamp must not be more than ${ahead} in the future` })
      } else timestamp = new Date(ts.ms).toISOString()
    }
    const rawProps = (input as { props?: unknown }).props
    if (typeof rawProps === 'object' && rawProps !== null && RESERVED_KEYS.some((k) => Object.hasOwn(rawProps, k))) {
      problems.push({ field: 'props', message: RESERVED_MESSAGE })
    }
    if (!allowForwarded) {
      for (const field of ['ip', 'user_agent'] as const) {
        const x = (input as Record<string, unknown>)[field]
        if (x !== undefined && x !== null && x !== '') problems.push({ field, message: FORWARD_MESSAGE(field) })
      }
    }
    if (!result.success || problems.length > 0 || timestamp === undefined) return { ok: false, problems: dedupe(problems) }
    const e = result.output
    const event: Event = {
      event_id: (e.event_id ?? newId()).toLowerCase(),
      site_id: e.site_id,
      event_type: e.event_type,
      path: e.path,
      user_id: e.user_id,
      timestamp,
      received_at: receivedAt,
    }
    for (const f of UTM_FIELDS) if (e[f] !== null) event[f] = e[f]
    const props = propsOf(e.props)
    if (props) event.props = props
    return {
      ok: true,
      event,
      context: { referrer: e.referrer, screen_width: e.screen_width ?? null, click_id_param: e.click_id_param, ip: e.ip || null, user_agent: e.user_agent },
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
    Number.isFinite(e.received_at) &&
    DIMENSION_TEXT.every((f) => e[f] === undefined || optional(e[f])) &&
    (e.props === undefined || e.props === null || isStringRecord(e.props))
  )
}
const DIMENSION_TEXT = ['referrer', 'source', 'channel', ...UTM_FIELDS, 'country', 'browser', 'os', 'device'] as const
const isStringRecord = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x) && Object.values(x).every((v) => typeof v === 'string')
const clean = (s: string) => !s.includes('\0') && s.isWellFormed()
const isOptionalText = (x: unknown, max: number): x is string | null | undefined =>
  x === undefined || x === null || (typeof x === 'string' && x.length <= max && clean(x))

/**
 * The same rules as EventSchema plus the timestamp checks, written out by hand for the
 * common case of a valid event: valibot costs more than everything else an event needs.
 * Anything it does not accept goes through valibot, which names the problems; a property
 * test checks that the two always agree.
 */
function acceptFast(input: unknown, now: () => number, maxFutureMs: number, newId: () => string, allowForwarded: boolean): ParseResult | null {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return null
  const e = input as Record<string, unknown>
  const { site_id, event_type, timestamp, path, user_id, event_id } = e
  if (typeof site_id !== 'string' || !SITE_ID_PATTERN.test(site_id)) return null
  if (typeof event_type !== 'string' || event_type.length === 0 || event_type.length > LIMITS.event_type || !clean(event_type)) return null
  if (!isOptionalText(path, LIMITS.path) || (typeof path === 'string' && !pathFits(path)) || !isOptionalText(user_id, LIMITS.user_id)) return null
  if (event_id !== undefined && (typeof event_id !== 'string' || !UUID.test(event_id))) return null
  const t = now()
  let stamp: string
  if (timestamp === undefined || timestamp === null) stamp = new Date(t).toISOString()
  else {
    if (typeof timestamp !== 'string') return null
    // A timestamp in toISOString's form is stored as it came; any other is parsed and rewritten.
    let ms = canonicalMs(timestamp)
    const canonical = ms !== null
    if (ms === null) {
      const ts = parseTimestamp(timestamp)
      if (!ts.ok) return null
      ms = ts.ms
    }
    if (ms > t + maxFutureMs) return null
    stamp = canonical ? timestamp : new Date(ms).toISOString()
  }
  const event: Event = {
    event_id: ((event_id as string | undefined) ?? newId()).toLowerCase(),
    site_id,
    event_type,
    path: (path as string | null | undefined) || null,
    user_id: (user_id as string | null | undefined) || null,
    timestamp: stamp,
    received_at: t,
  }
  const context: Context = { referrer: null, screen_width: null, click_id_param: null, ip: null, user_agent: null }
  if (!acceptExtrasFast(e, event, context, allowForwarded)) return null
  return { ok: true, event, context }
}

/** acceptFast for the optional fields beyond the core ones; false sends the event to valibot. */
function acceptExtrasFast(e: Record<string, unknown>, event: Event, context: Context, allowForwarded: boolean): boolean {
  const { referrer, screen_width, click_id_param, props, ip, user_agent } = e
  if (referrer !== undefined) {
    if (!isOptionalText(referrer, LIMITS.referrer)) return false
    context.referrer = referrer || null
  }
  for (const f of UTM_FIELDS) {
    const x = e[f]
    if (x === undefined) continue
    if (!isOptionalText(x, LIMITS.utm)) return false
    if (x) event[f] = x
  }
  if (screen_width !== undefined && screen_width !== null) {
    if (!Number.isInteger(screen_width) || (screen_width as number) < 0 || (screen_width as number) > LIMITS.screen_width) return false
    context.screen_width = screen_width as number
  }
  if (click_id_param !== undefined && click_id_param !== null && click_id_param !== '') {
    if (!isAdClickParam(click_id_param)) return false
    context.click_id_param = click_id_param
  }
  if (props !== undefined && props !== null) {
    if (typeof props !== 'object' || Array.isArray(props)) return false
    const out: Record<string, string> = Object.create(null)
    let n = 0
    for (const key in props) {
      const x = (props as Record<string, unknown>)[key]
      if (++n > LIMITS.props || RESERVED_KEYS.includes(key) || key.length === 0 || key.length > LIMITS.prop_key || !clean(key)) return false
      if (typeof x === 'string') {
        if (x.length > LIMITS.prop_value || !clean(x)) return false
      } else if (!(typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x)))) return false
      out[key] = propValue(x)
    }
    if (n) event.props = out
  }
  if ((ip !== undefined && ip !== null && ip !== '') || (user_agent !== undefined && user_agent !== null && user_agent !== '')) {
    if (!allowForwarded) return false
    if (ip !== undefined && ip !== null && ip !== '' && (typeof ip !== 'string' || isIP(ip) === 0)) return false
    if (!isOptionalText(user_agent, LIMITS.user_agent)) return false
    context.ip = (ip as string | null | undefined) || null
    context.user_agent = (user_agent as string | null | undefined) || null
  }
  return true
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
