import { createHash, timingSafeEqual } from 'node:crypto'
import { createEnricher, deviceFromScreen, type Enricher } from '../enrich/enrich.ts'
import { type Context, createEventParser, type Event, type ParseResult, type Problem } from '../event/event.ts'
import type { Identity, Salt } from '../identity/identity.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { Backpressure } from '../queue/backpressure.ts'
import type { Queue } from '../queue/queue.ts'
import type { Registry } from '../sites/registry.ts'
import { checkBody, createDeadlines, parseJson, readBody } from './body.ts'
import { BEARER } from './auth.ts'
import { ApiError, errorBody, identityUnavailable, QUEUE_UNCONFIRMED, queueUnavailable, RETRY_AFTER_SECONDS } from './errors.ts'
import { createSiteCheck, type SiteRefusal } from './site-check.ts'
import { clientIp, createGate, createRateLimiter, createTurns, type Hold, type RequestIpSource, SMALL_BODY_BYTES } from './limits.ts'

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
  /**
   * Most request-body bytes held at once, counted from each request's declared length before
   * it is read; a request that does not fit gets a 503 at once. Bounds the API's memory.
   */
  inFlightBytes?: number
  /** A body that has not fully arrived by then gets a 408, whatever its size. */
  bodyTimeoutMs?: number
  /**
   * The token a server presents (Authorization: Bearer) to send its visitors' `ip` and
   * `user_agent` in events; without it those fields are refused. Kept only as a hash.
   */
  forwardToken?: string | null
  /** SITES_REGISTRY: accept only events of sites in the registry. */
  registry?: boolean
}

/**
 * The most bytes of large bodies parsed and processed at once: one 1000-event batch (about
 * 120 KB). Measured with 50 connections sending such batches: 512 KiB served about 13 % more of
 * them and peaked 16 MB higher (docs/benchmarks.md).
 */
export const PARSE_TURN_BYTES = 128 * 1024

export type IngestDeps = {
  queue: Pick<Queue, 'enqueue'>
  backpressure?: Backpressure | null
  metrics?: Metrics | null
  /** Maps an 8 MB country database and caches user agents: share one per process. Made here when not given. */
  enricher?: Enricher
  /**
   * Gives an event sent without a user_id the visitor id derived from its site, IP and user
   * agent under the day's salt (cookieless counting). Without it such events keep no user_id.
   */
  identity?: Identity | null
  /** The sites registry's cache: registered sites' domains feed the origin check, and with `registry` only they are accepted. */
  sites?: Pick<Registry, 'site'> | null
}

export type ItemResult =
  | { index: number; status: 'accepted'; event_id: string }
  | { index: number; status: 'rejected'; code: 'invalid_event'; details: Problem[] }
  | { index: number; status: 'failed'; code: 'queue_unavailable'; error: string; event_id: string }

type Handler = (req: Request, server?: RequestIpSource) => Promise<Response>
/** What a handler reports for metrics: events accepted, and events not accepted by reason. */
type Tally = { accepted: number; invalid: number; unavailable: number; bots: number }
/** The request's own client address, user agent and Origin header: what its events are enriched from unless a trusted server forwards a visitor's. */
type Sender = { ip: string; userAgent: string | null; origin: string | null }

export type Ingest = { event: Handler; events: Handler; preflight: (req: Request) => Response }

/**
 * POST /event and POST /events as plain Request → Response functions: validate, put on the
 * queue, and answer 202 only once Redis has the events. They carry no framework, so the API
 * serves them from Bun's native router (the hot path) and the Hono app mounts the same ones.
 */
export function createIngest(
  { queue, backpressure = null, metrics = null, enricher = createEnricher(), identity = null, sites: registry = null }: IngestDeps,
  options: IngestOptions,
): Ingest {
  const {
    bodyLimitBytes,
    batchMax,
    maxFutureMs,
    allowedSites = null,
    allowedOrigins = null,
    rateLimitPerSecond = 0,
    rateLimitBurst,
    trustProxy = false,
    inFlightBytes = 16 * 1024 * 1024,
    bodyTimeoutMs = 10_000,
    forwardToken = null,
    registry: requireRegistered = false,
  } = options
  const gate = createGate(inFlightBytes)
  // At most 128 KiB of large bodies parsed at once (less with a small budget): parsing holds
  // several times a body's size, and this is what bounds the API's peak memory under batches.
  const turns = createTurns(Math.max(SMALL_BODY_BYTES, Math.min(PARSE_TURN_BYTES, Math.floor(inFlightBytes / 4))))
  const deadlines = createDeadlines(bodyTimeoutMs)
  const parsers = { own: createEventParser({ maxFutureMs }), forwarded: createEventParser({ maxFutureMs, allowForwarded: true }) }
  const forwardHash = forwardToken ? sha256(forwardToken) : null
  /** Whether the request comes from a server trusted to forward its visitors' IP and user agent. */
  const forwards = (req: Request): boolean => {
    if (!forwardHash) return false
    const token = BEARER.exec(req.headers.get('authorization') ?? '')?.[1]
    return token !== undefined && timingSafeEqual(sha256(token), forwardHash)
  }
  const checkSite = createSiteCheck(registry, { allowedSites, requireRegistered })
  const origins = allowedOrigins?.length ? new Set(allowedOrigins) : null
  const take =
    rateLimitPerSecond > 0 ? createRateLimiter({ perSecond: rateLimitPerSecond, burst: rateLimitBurst ?? Math.max(rateLimitPerSecond, batchMax) }) : null

  /** A valid event of a site not accepted here (unregistered, or from another origin) is refused apart from invalid ones (403, not 400). */
  type Parsed = ParseResult | { ok: false; refused: SiteRefusal['code']; problems: Problem[] }
  const parse = (input: unknown, parseEvent: (input: unknown) => ParseResult, origin: string | null): Parsed => {
    const r = parseEvent(input)
    const refusal = r.ok ? checkSite(r.event.site_id, origin) : null
    if (refusal) return { ok: false, refused: refusal.code, problems: [{ field: 'site_id', message: refusal.message }] }
    return r
  }

  /**
   * Adds what the API derives to a valid event: browser, OS, device and bot from the user
   * agent, country from the IP, source and channel from the referrer and UTM tags. The IP and
   * the user agent are read here and go no further. Returns false for a bot: the caller
   * answers as for any event but does not store it.
   */
  const enrich = (event: Event, context: Context, sender: Sender, tally: Tally): boolean => {
    const agent = enricher.agent(context.user_agent ?? sender.userAgent)
    if (agent.bot) {
      tally.bots++
      if (metrics) metrics.events.bots[agent.bot] = (metrics.events.bots[agent.bot] ?? 0) + 1
      return false
    }
    if (agent.browser) event.browser = agent.browser
    if (agent.os) event.os = agent.os
    const device = context.screen_width !== null ? deviceFromScreen(context.screen_width) : agent.device
    if (device) event.device = device
    const country = enricher.country(context.ip ?? sender.ip)
    if (country) event.country = country
    const src = enricher.source({
      referrer: selfReferral(context.referrer, sender.origin) ? null : context.referrer,
      utm_source: event.utm_source ?? null,
      utm_medium: event.utm_medium ?? null,
      utm_campaign: event.utm_campaign ?? null,
      path: event.path,
      click_id_param: context.click_id_param,
    })
    event.source = src.source
    event.channel = src.channel
    if (src.referrer) event.referrer = src.referrer
    return true
  }

  /**
   * The day's salt, for events that need a visitor id: the cached one as it is, awaited only
   * while the first request of a UTC day fetches it. Redis failing to give it is a 503 with
   * Retry-After, as for an unavailable queue: no event of the request is stored.
   */
  const saltOf = (id: Identity): Salt | Promise<Salt> => {
    const salt = id.salt()
    return salt instanceof Promise ? salt.catch(identityUnavailable) : salt
  }
  /** The visitor id of an event without one: from the IP and user agent a trusted server forwards, or the request's own. */
  const visitorId = (salt: Salt, event: Event, context: Context, sender: Sender) =>
    salt.visitorId(event.site_id, context.ip ?? sender.ip, context.user_agent ?? sender.userAgent)

  /** CORS for browser beacons: any origin, or only the allowed ones. */
  const ANY_ORIGIN = { 'Access-Control-Allow-Origin': '*' }
  // One Headers object for the common answer: a Response copies it, and building one from a
  // plain object per response costs more than the copy.
  const JSON_ANY_ORIGIN = new Headers({ 'Content-Type': 'application/json', ...ANY_ORIGIN })
  const corsHeaders = (req: Request): Record<string, string> => {
    if (!origins) return ANY_ORIGIN
    const origin = req.headers.get('origin')
    return origin && origins.has(origin) ? { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' } : { Vary: 'Origin' }
  }
  const json = (req: Request, body: unknown, status: number, headers?: Record<string, string>) => respond(req, JSON.stringify(body), status, headers)
  const respond = (req: Request, body: string, status: number, headers?: Record<string, string>) =>
    new Response(body, {
      status,
      headers: !origins && !headers ? JSON_ANY_ORIGIN : { 'Content-Type': 'application/json', ...corsHeaders(req), ...headers },
    })

  /**
   * Checks that come before reading the body, then a place in the in-flight budget for its
   * declared length. A request that does not fit is refused before Bun buffers its body, and
   * its connection is closed so the rest of the body is never read. A body sent without a
   * length holds a small body's place until it outgrows it, then the whole body limit.
   * Returns the hold (the caller releases it once it has answered) and the body's bytes.
   */
  function admit(req: Request): { hold: Hold; bytes: Promise<Uint8Array> } {
    const origin = req.headers.get('origin')
    if (origins && origin !== null && !origins.has(origin)) {
      throw new ApiError(403, 'origin_not_allowed', `origin ${JSON.stringify(origin)} may not send events here`)
    }
    if (backpressure?.overloaded()) {
      throw new ApiError(503, 'queue_full', `the queue holds ${backpressure.backlog()} unprocessed entries (limit ${backpressure.maxBacklog}); retry later`, {
        headers: { 'Retry-After': '5' },
      })
    }
    const declared = checkBody(req, bodyLimitBytes)
    const hold = gate.hold(declared ?? bodyLimitBytes)
    if (declared !== null && !hold.grow(declared)) busy()
    const grow = declared !== null ? undefined : (size: number) => void (hold.grow(size) || busy())
    return { hold, bytes: readBody(req, declared, bodyLimitBytes, deadlines, grow) }
  }
  const busy = (): never => {
    throw new ApiError(
      503,
      'server_busy',
      `the API holds ${gate.inUse()} bytes of request bodies, its limit (INGEST_IN_FLIGHT_BYTES ${gate.maxBytes}); retry in ${RETRY_AFTER_SECONDS} s`,
      {
        headers: { 'Retry-After': RETRY_AFTER_SECONDS, Connection: 'close' },
      },
    )
  }
  /** What every event of one request shares, read from it once: the client's address, user agent and origin. */
  const senderOf = (req: Request, server: RequestIpSource | undefined): Sender => ({
    ip: clientIp(req, server, trustProxy),
    userAgent: req.headers.get('user-agent'),
    origin: req.headers.get('origin'),
  })
  const charge = (sender: Sender, n: number) => {
    const verdict = take?.(sender.ip, n)
    if (verdict && !verdict.ok) {
      throw new ApiError(429, 'rate_limited', `too many events from this client; retry in ${verdict.retryAfterS} s`, {
        headers: { 'Retry-After': String(verdict.retryAfterS) },
      })
    }
  }
  /**
   * One ingest route as a single async function (each await layer costs the hot path): admit,
   * read and parse the body, hand it to `accept`, and answer. An ApiError becomes its JSON
   * answer; anything else goes up to the caller's error handler. Counts every answer.
   */
  const route = (name: string, accept: (req: Request, server: RequestIpSource | undefined, tally: Tally, body: unknown) => Promise<Response>): Handler =>
    async function ingest(req, server) {
      const started = metrics ? performance.now() : 0
      const tally: Tally = { accepted: 0, invalid: 0, unavailable: 0, bots: 0 }
      let res: Response | undefined
      let hold: Hold | undefined
      try {
        const admitted = admit(req)
        hold = admitted.hold
        const bytes = await admitted.bytes
        // Large bodies wait for their turn at parsing; small ones never wait.
        const turn = bytes.length <= SMALL_BODY_BYTES ? null : turns.take(bytes.length)
        const done = typeof turn === 'function' || turn === null ? turn : await turn
        try {
          res = await accept(req, server, tally, parseJson(bytes))
          return res
        } finally {
          done?.()
        }
      } catch (err) {
        if (!(err instanceof ApiError)) throw err
        if (err.status >= 500) tally.unavailable ||= 1
        else if (tally.accepted + tally.invalid === 0) tally.invalid = 1
        res = json(req, errorBody(err), err.status, err.headers)
        return res
      } finally {
        hold?.release()
        if (metrics) {
          metrics.observeRequest(name, res?.status ?? 500, (performance.now() - started) / 1000)
          metrics.events.accepted += tally.accepted
          metrics.events.rejected.invalid! += tally.invalid
          metrics.events.rejected.unavailable! += tally.unavailable
        }
      }
    }

  async function acceptEvent(req: Request, server: RequestIpSource | undefined, tally: Tally, body: unknown): Promise<Response> {
    const sender = senderOf(req, server)
    const result = parse(body, forwards(req) ? parsers.forwarded : parsers.own, sender.origin)
    if (!result.ok) {
      if ('refused' in result) throw new ApiError(403, result.refused, result.problems[0]!.message)
      throw new ApiError(400, 'invalid_event', 'event is invalid', { details: result.problems })
    }
    charge(sender, 1)
    // A bot gets the same answer as anyone, so it learns nothing; its event is not stored.
    if (!enrich(result.event, result.context, sender, tally)) return respond(req, `{"status":"accepted","event_id":"${result.event.event_id}"}`, 202)
    if (identity && result.event.user_id === null) {
      const salt = saltOf(identity)
      result.event.user_id = visitorId(salt instanceof Promise ? await salt : salt, result.event, result.context, sender)
    }
    const [written] = await queue.enqueue([result.event], req.signal)
    if (!written?.ok) throw queueUnavailable(result.event.event_id)
    tally.accepted = 1
    // event_id is a lower-case UUID: nothing in it needs escaping.
    return respond(req, `{"status":"accepted","event_id":"${result.event.event_id}"}`, 202)
  }

  async function acceptEvents(req: Request, server: RequestIpSource | undefined, tally: Tally, body: unknown): Promise<Response> {
    const items = batchItems(body, batchMax)
    const sender = senderOf(req, server)
    charge(sender, items.length)
    const results: ItemResult[] = new Array(items.length)
    const valid: { index: number; event: Event; context: Context; stored: boolean }[] = []
    const parseEvent = forwards(req) ? parsers.forwarded : parsers.own
    items.forEach((item, index) => {
      const r = parse(item, parseEvent, sender.origin)
      if (r.ok) valid.push({ index, event: r.event, context: r.context, stored: enrich(r.event, r.context, sender, tally) })
      else results[index] = { index, status: 'rejected', code: 'invalid_event', details: r.problems }
    })
    if (identity) {
      let salt: Salt | Promise<Salt> | null = null
      for (const v of valid) {
        if (!v.stored || v.event.user_id !== null) continue
        if (salt === null) {
          salt = saltOf(identity)
          if (salt instanceof Promise) {
            salt = await salt.catch((err) => {
              tally.unavailable = valid.length
              throw err
            })
          }
        }
        v.event.user_id = visitorId(salt as Salt, v.event, v.context, sender)
      }
    }
    const toStore = tally.bots ? valid.filter((v) => v.stored) : valid
    const stored = toStore.length
      ? await queue.enqueue(
          toStore.map((v) => v.event),
          req.signal,
        )
      : []
    // Bots' events count as accepted (written) without being stored.
    const written = tally.bots ? spread(valid, stored) : stored
    if (valid.length === items.length && written.every((w) => w.ok)) return allAccepted(req, tally, valid)
    valid.forEach(({ index, event }, i) => {
      results[index] = written[i]?.ok
        ? { index, status: 'accepted', event_id: event.event_id }
        : { index, status: 'failed', code: 'queue_unavailable', error: QUEUE_UNCONFIRMED, event_id: event.event_id }
    })
    const accepted = results.filter((r) => r.status === 'accepted').length
    const failed = results.filter((r) => r.status === 'failed').length
    const rejected = items.length - accepted - failed
    Object.assign(tally, { accepted: accepted - tally.bots, invalid: rejected, unavailable: failed })
    const status = accepted === items.length ? 202 : accepted > 0 ? 207 : failed > 0 ? 503 : 400
    const summary = accepted === items.length ? 'accepted' : accepted > 0 ? 'partial' : failed > 0 ? 'unavailable' : 'rejected'
    return json(req, { status: summary, accepted, rejected, failed, results }, status, failed > 0 ? { 'Retry-After': RETRY_AFTER_SECONDS } : undefined)
  }

  /**
   * The common answer to a batch, every event accepted, written straight into its JSON
   * text: the same body JSON.stringify would give, without an object per event.
   * event_ids are lower-case UUIDs, so nothing in them needs escaping.
   */
  function allAccepted(req: Request, tally: Tally, valid: { event: Event }[]): Response {
    let out = `{"status":"accepted","accepted":${valid.length},"rejected":0,"failed":0,"results":[`
    for (let i = 0; i < valid.length; i++) out += `${i ? ',' : ''}{"index":${i},"status":"accepted","event_id":"${valid[i]!.event.event_id}"}`
    tally.accepted = valid.length - tally.bots
    return respond(req, `${out}]}`, 202)
  }

  const event = route('/event', acceptEvent)
  const events = route('/events', acceptEvents)

  // Browsers: sendBeacon's text/plain POST is a simple request (no preflight); fetch with JSON preflights.
  function preflight(req: Request): Response {
    const headers = { ...corsHeaders(req) }
    if (headers['Access-Control-Allow-Origin']) {
      Object.assign(headers, {
        'Access-Control-Allow-Methods': 'POST, OPTIONS',
        'Access-Control-Allow-Headers': 'Content-Type',
        'Access-Control-Max-Age': '86400',
      })
    }
    return new Response(null, { status: 204, headers })
  }

  return { event, events, preflight }
}

const sha256 = (s: string) => createHash('sha256').update(s).digest()

/** The queue's answers for the stored events, spread back over every valid one (bots count as written). */
function spread(valid: { stored: boolean }[], stored: { ok: boolean }[]): { ok: boolean }[] {
  let i = 0
  return valid.map((v) => (v.stored ? stored[i++]! : { ok: true }))
}

/** A referrer on the same host as the page's origin (the Origin header) is no referrer. */
function selfReferral(referrer: string | null, origin: string | null): boolean {
  if (!referrer || !origin) return false
  try {
    return new URL(referrer).host === new URL(origin).host
  } catch {
    return false
  }
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
