// Package http is the Hono app: ingestion, stats, health. Mains serve it with Bun.serve;
// tests call app.request() on it directly.
import { Hono } from 'hono'
import { methodNotAllowed } from 'hono/method-not-allowed'
import { requestId } from 'hono/request-id'
import { withTimeout } from '../clients/clients.ts'
import type { Identity } from '../identity/identity.ts'
import type { Logger } from '../log/log.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { Backpressure } from '../queue/backpressure.ts'
import type { Queue } from '../queue/queue.ts'
import type { Registry } from '../sites/registry.ts'
import type { Sites } from '../sites/sites.ts'
import type { Tokens } from '../sites/tokens.ts'
import type { Store } from '../store/store.ts'
import { adminRoutes } from './admin.ts'
import { createAuth } from './auth.ts'
import { errorHandler } from './errors.ts'
import { createIngest, type Ingest, type IngestOptions } from './ingest.ts'
import type { RequestIpSource } from './limits.ts'
import { dashboardRoutes } from './dashboard.ts'
import { documentation, routeDocs } from './openapi.ts'
import { trackerRoute } from './tracker.ts'
import { exportRoutes } from './export.ts'
import { createAnswer, queryRoutes } from './query.ts'
import { statsRoutes } from './stats.ts'

export type Check = () => Promise<unknown>

export type AppDeps = {
  queue: Pick<Queue, 'enqueue'>
  /** When given, ingest answers 503 while the queue's backlog is over its limit. */
  backpressure?: Backpressure | null
  store: Store
  log: Logger
  /** Named dependency checks for /readyz, e.g. { redis: ping, postgres: select 1 }. */
  checks: Record<string, Check>
  /** The ingest handlers; pass the same ones the server's native routes use, so they share state. */
  ingest?: Ingest
  /** When given, requests are counted and GET /metrics serves them. */
  metrics?: Metrics | null
  /** Visitor ids for events sent without a user_id (when `ingest` is not given); see createIngest. */
  identity?: Identity | null
  /** The sites registry's cache: site tokens, links, public sites and timezones. Without it only STATS_TOKEN reads stats. */
  registry?: Registry | null
  /** The registry in Postgres; with it (and `registry`), the admin API is served. */
  sites?: Sites | null
  tokens?: Tokens | null
}

export type AppOptions = {
  ingest: IngestOptions
  /** STATS_TOKEN: a bearer token that reads every site's stats; null for none. */
  statsToken: string | null
  /** STATS_PUBLIC: every site's stats are read without a token (STATS_TOKEN, if set, still works). Default: no STATS_TOKEN. */
  statsPublic?: boolean
  /** ADMIN_TOKEN: an all-sites admin token besides the registry's. */
  adminToken?: string | null
  /** True once shutdown has begun: /readyz answers 503 so load balancers stop sending traffic. */
  isStopping?: () => boolean
  readyTimeoutMs?: number
  /** ROLLUP_HOUR_RETENTION_DAYS: stats refuse ranges that need hourly buckets older than this; 0 keeps them forever. */
  hourRollupDays?: number
  /**
   * QUERY_TIMEOUT_MS: what all the statements of one /v1/query or export request may take
   * together (each is also cut there by the connections' statement_timeout); 0: no limit.
   */
  queryTimeoutMs?: number
}

export function createApp(
  { queue, backpressure = null, store, log, checks, ingest: handlers, metrics = null, identity = null, registry = null, sites = null, tokens = null }: AppDeps,
  {
    ingest,
    statsToken,
    statsPublic = statsToken === null,
    adminToken = null,
    isStopping = () => false,
    readyTimeoutMs = 1000,
    hourRollupDays = 0,
    queryTimeoutMs = 0,
  }: AppOptions,
) {
  const app = new Hono()
  // X-Request-Id: the client's, or a new one; echoed back and put in error logs.
  app.use(requestId())
  app.use(
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, methods) =>
        c.json({ error: `${c.req.method} is not allowed on ${c.req.path}; use ${methods.join(', ')}`, code: 'method_not_allowed' }, 405, {
          Allow: methods.join(', '),
        }),
    }),
  )
  app.onError(errorHandler(log))
  if (metrics) {
    // Ingest counts itself (it is also served outside Hono); this counts every other route.
    app.use(async function countRequest(c, next) {
      const started = performance.now()
      await next()
      const route = c.req.routePath === '/*' ? 'unmatched' : c.req.routePath
      if (route === '/event' || route === '/events') return
      metrics.observeRequest(route, c.res.status, (performance.now() - started) / 1000)
    })
    app.get('/metrics', async (c) => c.body(await metrics.scrape(), 200, { 'Content-Type': metrics.contentType }))
  }
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}`, code: 'not_found' }, 404))

  app.get('/healthz', routeDocs.healthz, (c) => c.json({ status: 'ok' }))
  app.get('/readyz', routeDocs.readyz, async (c) => {
    if (isStopping()) return c.json({ status: 'stopping' }, 503)
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await withTimeout(Promise.resolve(check()), readyTimeoutMs, 'timed out')
          return [name, 'ok'] as const
        } catch (err) {
          return [name, `failing: ${(err as Error).message}`] as const
        }
      }),
    )
    const ready = results.every(([, s]) => s === 'ok')
    return c.json({ status: ready ? 'ready' : 'not ready', checks: Object.fromEntries(results) }, ready ? 200 : 503)
  })

  const ingestHandlers = handlers ?? createIngest({ queue, backpressure, metrics, identity, sites: registry }, ingest)
  for (const [path, handle, docs] of [
    ['/event', ingestHandlers.event, routeDocs.event],
    ['/events', ingestHandlers.events, routeDocs.events],
  ] as const) {
    app.post(path, docs, (c) => handle(c.req.raw, c.env as RequestIpSource))
    app.options(path, (c) => ingestHandlers.preflight(c.req.raw))
  }

  const auth = createAuth(registry, { statsToken, statsPublic, adminToken })
  for (const path of ['/stats', '/v1/*']) app.use(path, auth.identify)
  app.route('/', statsRoutes(store, { maxFutureMs: ingest.maxFutureMs, hourRollupDays, auth }))
  const queryOptions = { maxFutureMs: ingest.maxFutureMs, hourRollupDays, auth, registry, timeoutMs: queryTimeoutMs }
  app.route('/', queryRoutes(store, queryOptions))
  app.route('/', exportRoutes(createAnswer(store, queryOptions)))
  if (sites && tokens) app.route('/', adminRoutes({ sites, tokens, auth }))
  trackerRoute(app)
  dashboardRoutes(app)
  documentation(app)
  return app
}
