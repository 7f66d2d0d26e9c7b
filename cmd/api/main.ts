// sluice-api: the ingestion and reporting HTTP API.
import { openClients } from '../../internal/clients/open.ts'
import { ConfigError, loadConfig, requireStatsAccess, STRONG_TOKEN_CHARS, weakTokens } from '../../internal/config/config.ts'
import { createSql, UnreachableError } from '../../internal/clients/clients.ts'
import { createApp } from '../../internal/http/http.ts'
import { createIngest } from '../../internal/http/ingest.ts'
import { createIdentity } from '../../internal/identity/identity.ts'
import { createMetrics, registerQueueGauges } from '../../internal/metrics/metrics.ts'
import { onStopSignals, shutdown } from '../../internal/lifecycle/lifecycle.ts'
import { EXIT } from '../../internal/lifecycle/exit-codes.ts'
import { aborted, runMain } from '../../internal/lifecycle/run.ts'
import { createLogger } from '../../internal/log/log.ts'
import { createBackpressure } from '../../internal/queue/backpressure.ts'
import { createShardedQueue } from '../../internal/queue/shards.ts'
import { createRegistry } from '../../internal/sites/registry.ts'
import { createSites } from '../../internal/sites/sites.ts'
import { createTokens } from '../../internal/sites/tokens.ts'
import { createStore } from '../../internal/store/store.ts'

await runMain('api', async () => {
  const config = loadConfig()
  requireStatsAccess(config)
  const log = createLogger({ level: config.logLevel, name: 'api' })
  // No offline queue: while Redis is down, writes fail at once and clients get a 503.
  // Postgres cancels a query past QUERY_TIMEOUT_MS, which frees its connection (of 4).
  const { redis, sql } = await openClients(config, 'api', log, { redisOfflineQueue: false, sqlMax: 4, statementTimeoutMs: config.stats.queryTimeoutMs })
  const queue = createShardedQueue(redis, config.queue)
  const backpressure = createBackpressure(redis, queue.streams, { maxBacklog: config.queue.maxBacklog })
  const metrics = createMetrics('api')
  registerQueueGauges(metrics, queue)
  const store = createStore(sql)
  const stop = onStopSignals(log)
  const identity = createIdentity({ redis }, config.identity)
  // The registry polls on a connection of its own: behind the 4 that stats and admin requests
  // share (each may run QUERY_TIMEOUT_MS), a revocation would wait in line for them.
  const registrySql = createSql(config.databaseUrl, { max: 1, statementTimeoutMs: config.stats.queryTimeoutMs })
  const registry = createRegistry({ sql: registrySql, log }, config.registry)
  await registry.start(stop)
  const ingest = createIngest({ queue, backpressure, metrics, identity, sites: registry }, config.ingest)
  const app = createApp(
    {
      ...{ queue, backpressure, ingest, metrics, store, log, registry, sites: createSites(sql), tokens: createTokens(sql) },
      checks: { redis: () => redis.ping(), postgres: () => store.ping() },
    },
    {
      ingest: config.ingest,
      statsToken: config.stats.token,
      statsPublic: config.stats.public,
      adminToken: config.admin.token,
      isStopping: () => stop.aborted,
      hourRollupDays: config.retention.hourRollupDays,
      queryTimeoutMs: config.stats.queryTimeoutMs,
    },
  )
  // Ingest takes Bun's native router (the hot path); everything else, and other methods, go to Hono.
  const server = listen(config.host, config.port, () =>
    Bun.serve({
      port: config.port,
      hostname: config.host,
      // Several API processes on one host share the port; the kernel spreads connections over them.
      reusePort: true,
      // Bun closes a connection idle one to two times this long (measured: 2 s gave 4), also one
      // whose request is still being answered (its response is then lost): so it outlasts QUERY_TIMEOUT_MS, after which Postgres
      // cancels the query and the request is answered 503. deploy/nginx/nginx.conf keeps its
      // idle upstream connections for less (keepalive_timeout 5s), so that nginx closes them first.
      idleTimeout: config.stats.queryTimeoutMs > 0 ? Math.min(255, Math.ceil(config.stats.queryTimeoutMs / 1000) + 5) : 255,
      routes: {
        '/event': { POST: ingest.event, OPTIONS: ingest.preflight },
        '/events': { POST: ingest.events, OPTIONS: ingest.preflight },
      },
      fetch: app.fetch,
      error(err) {
        log.error({ err }, 'unhandled error')
        return Response.json({ error: 'internal error', code: 'internal' }, { status: 500 })
      },
      // The handlers enforce INGEST_BODY_LIMIT_BYTES with a JSON 413; this is only a backstop.
      maxRequestBodySize: Math.max(64 * 1024 * 1024, 4 * config.ingest.bodyLimitBytes),
    }),
  )
  log.info({ port: server.port, host: config.host }, 'api listening')
  for (const name of weakTokens(config)) {
    log.warn(
      `${name} is shorter than ${STRONG_TOKEN_CHARS} characters: anyone who can reach the API may guess it; use a long random one (openssl rand -base64 24)`,
    )
  }

  await aborted(stop)
  const ok = await shutdown(
    log,
    [
      ['finish in-flight requests', () => server.stop()],
      ['close postgres', () => Promise.all([sql.end({ timeout: 5 }), registrySql.end({ timeout: 5 })])],
      // quit() throws while Redis is down (no offline queue): then there is nothing to close.
      ['close redis', () => (redis.status === 'ready' ? redis.quit() : redis.disconnect())],
    ],
    config.shutdownTimeoutMs,
  )
  log.info('api stopped')
  return ok ? EXIT.ok : EXIT.failed
})

/** Bun.serve, with a port in use or an address not of this machine said in one line that names the setting. */
function listen<T>(host: string, port: number, serve: () => T): T {
  try {
    return serve()
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'EADDRINUSE') throw new UnreachableError(`cannot listen on ${host}:${port}: another process holds the port; stop it, or set PORT`)
    if (code === 'EADDRNOTAVAIL' || code === 'EINVAL' || code === 'ENOTFOUND' || code === 'EAI_NONAME')
      throw new ConfigError(`HOST: cannot listen on ${host}:${port} (${code}): set HOST to an address of this machine, or 0.0.0.0`)
    throw err
  }
}
