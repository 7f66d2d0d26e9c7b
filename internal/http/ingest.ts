import { type Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { cors } from 'hono/cors'
import { createEventParser, type Event, type ParseResult, type Problem } from '../event/event.ts'
import type { Backpressure } from '../queue/backpressure.ts'
import type { Queue } from '../queue/queue.ts'
import { readJsonBody } from './body.ts'
import { ApiError, queueUnavailable, RETRY_AFTER_SECONDS } from './errors.ts'
import { clientIp, createRateLimiter } from './limits.ts'

export type IngestOptions = {
  bodyLimitBytes: number
  batchMax: number
  maxFutureMs: number
  /** When set, only events for these site_ids are accepted. */
  allowedSites?: readonly string[] | null
  /** When set, browser requests (those with an Origin header) must come from one of these origins. */
  allowedOrigins?: readonly string[] | null
  /** Events per second per client IP; 0 turns the limit off. */
  rateLimitPerSecond?: number
  rateLimitBurst?: number
  /** Read the client IP from X-Forwarded-For (set when behind nginx). */
  trustProxy?: boolean
}

export type IngestDeps = { queue: Queue; backpressure?: Backpressure | null }

export type ItemResult =
  | { index: number; status: 'accepted'; event_id: string }
  | { index: number; status: 'rejected'; code: 'invalid_event'; details: Problem[] }
  | { index: number; status: 'failed'; code: 'queue_unavailable'; error: string }

/** POST /event and POST /events: validate, put on the queue, and answer 202 only once Redis has the events. */
export function ingestRoutes({ queue, backpressure = null }: IngestDeps, options: IngestOptions) {
  const { bodyLimitBytes, batchMax, maxFutureMs, allowedSites = null, allowedOrigins = null, rateLimitPerSecond = 0, rateLimitBurst, trustProxy = false } = options
  const parseEvent = createEventParser({ maxFutureMs })
  const sites = allowedSites?.length ? new Set(allowedSites) : null
  const origins = allowedOrigins?.length ? new Set(allowedOrigins) : null
  const take = rateLimitPerSecond > 0 ? createRateLimiter({ perSecond: rateLimitPerSecond, burst: rateLimitBurst ?? Math.max(rateLimitPerSecond, batchMax) }) : null

  const parse = (input: unknown): ParseResult => {
    const r = parseEvent(input)
    if (r.ok && sites && !sites.has(r.event.site_id)) {
      return { ok: false, problems: [{ field: 'site_id', message: `site_id ${JSON.stringify(r.event.site_id)} is not registered here` }] }
    }
    return r
  }
  const limit = bodyLimit({
    maxSize: bodyLimitBytes,
    onError: (c) => c.json({ error: `body is larger than the ${bodyLimitBytes}-byte limit`, code: 'body_too_large' }, 413),
  })
  // Browsers: sendBeacon's text/plain POST is a simple request (no preflight); fetch with JSON preflights.
  const corsHeaders = cors({
    origin: (origin) => (origins ? (origins.has(origin) ? origin : null) : '*'),
    allowMethods: ['POST', 'OPTIONS'],
    allowHeaders: ['Content-Type'],
    maxAge: 86_400,
  })
  /** Checks that apply before the body is read: origin, load shedding. */
  const admit = async function admit(c: Context, next: () => Promise<void>) {
    const origin = c.req.header('origin')
    if (origins && origin !== undefined && !origins.has(origin)) {
      throw new ApiError(403, 'origin_not_allowed', `origin ${JSON.stringify(origin)} may not send events here`)
    }
    if (backpressure?.overloaded()) {
      throw new ApiError(503, 'queue_full', `the queue holds ${backpressure.backlog()} unprocessed events (limit ${backpressure.maxBacklog}); retry later`, undefined, { 'Retry-After': '5' })
    }
    await next()
  }
  const charge = (c: Context, n: number) => {
    const verdict = take?.(clientIp(c, trustProxy), n)
    if (verdict && !verdict.ok) {
      throw new ApiError(429, 'rate_limited', `too many events from this client; retry in ${verdict.retryAfterS} s`, undefined, { 'Retry-After': String(verdict.retryAfterS) })
    }
  }

  return new Hono()
    .use('/event', corsHeaders)
    .use('/events', corsHeaders)
    .post('/event', admit, limit, async (c) => {
      const result = parse(await readJsonBody(c))
      if (!result.ok) {
        const notRegistered = sites && result.problems.length === 1 && result.problems[0]!.message.endsWith('is not registered here')
        if (notRegistered) throw new ApiError(403, 'site_not_allowed', result.problems[0]!.message)
        throw new ApiError(400, 'invalid_event', 'event is invalid', result.problems)
      }
      charge(c, 1)
      const [written] = await queue.enqueue([result.event])
      if (!written?.ok) throw queueUnavailable()
      return c.json({ status: 'accepted', event_id: result.event.event_id }, 202)
    })
    .post('/events', admit, limit, async (c) => {
      const items = batchItems(await readJsonBody(c), batchMax)
      charge(c, items.length)
      const results: ItemResult[] = new Array(items.length)
      const valid: { index: number; event: Event }[] = []
      items.forEach((item, index) => {
        const r = parse(item)
        if (r.ok) valid.push({ index, event: r.event })
        else results[index] = { index, status: 'rejected', code: 'invalid_event', details: r.problems }
      })
      const written = valid.length ? await queue.enqueue(valid.map((v) => v.event)) : []
      valid.forEach(({ index, event }, i) => {
        results[index] = written[i]?.ok
          ? { index, status: 'accepted', event_id: event.event_id }
          : { index, status: 'failed', code: 'queue_unavailable', error: 'the event queue cannot take writes right now; retry this event' }
      })
      const accepted = results.filter((r) => r.status === 'accepted').length
      const failed = results.filter((r) => r.status === 'failed').length
      const rejected = items.length - accepted - failed
      const status = accepted === items.length ? 202 : accepted > 0 ? 207 : failed > 0 ? 503 : 400
      const summary = accepted === items.length ? 'accepted' : accepted > 0 ? 'partial' : failed > 0 ? 'unavailable' : 'rejected'
      const headers = failed > 0 ? { 'Retry-After': RETRY_AFTER_SECONDS } : undefined
      return c.json({ status: summary, accepted, rejected, failed, results }, status, headers)
    })
}

function batchItems(body: unknown, max: number): unknown[] {
  const items = Array.isArray(body) ? body : (body as { events?: unknown } | null)?.events
  if (!Array.isArray(items)) {
    throw new ApiError(400, 'invalid_batch', 'body must be a JSON array of events, or an object {"events": [...]}')
  }
  if (items.length === 0) throw new ApiError(400, 'empty_batch', 'batch has no events')
  if (items.length > max) {
    throw new ApiError(413, 'batch_too_large', `batch has ${items.length} events; the limit is ${max}`)
  }
  return items
}
