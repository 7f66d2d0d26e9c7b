// Package config is the only place that reads the environment. It parses it
// with valibot into a frozen, typed Config: explicit value, then env, then DEFAULTS.
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { Cron } from 'croner'
import * as v from 'valibot'

/** Every setting, by environment variable name, with its default. README's config table mirrors this. */
export const DEFAULTS = {
  PORT: '8080',
  HOST: '0.0.0.0',
  REDIS_URL: 'redis://127.0.0.1:6379',
  REDIS_CLUSTER_NODES: '',
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/sluice',
  LOG_LEVEL: 'info',
  QUEUE_STREAM: 'sluice:events',
  QUEUE_SHARDS: '0',
  QUEUE_GROUP: 'sluice-workers',
  REDIS_TIMEOUT_MS: '2000',
  REDIS_WAIT_REPLICAS: '0',
  REDIS_WAIT_TIMEOUT_MS: '100',
  QUEUE_MAX_BACKLOG: '1000000',
  QUEUE_ENTRY_MAX_EVENTS: '100',
  INGEST_BODY_LIMIT_BYTES: String(1024 * 1024),
  INGEST_BATCH_MAX: '1000',
  INGEST_MAX_FUTURE_MS: String(5 * 60_000),
  INGEST_ALLOWED_SITES: '',
  INGEST_ALLOWED_ORIGINS: '',
  INGEST_RATE_LIMIT: '0',
  INGEST_IN_FLIGHT_BYTES: String(16 * 1024 * 1024),
  INGEST_BODY_TIMEOUT_MS: '10000',
  INGEST_RATE_BURST: '0',
  TRUST_PROXY: 'false',
  INGEST_FORWARD_TOKEN: '',
  IDENTITY_KEY_PREFIX: 'sluice:identity',
  SITES_REGISTRY: 'false',
  REGISTRY_REFRESH_MS: '1000',
  QUERY_TIMEOUT_MS: '25000',
  ADMIN_TOKEN: '',
  ROLLUP_DIM_CAP: '1000',
  VISIT_CLOSE_AFTER_MS: String(30 * 60_000),
  WORKER_NAME: '',
  WORKER_BATCH_SIZE: '2000',
  WORKER_BLOCK_MS: '1000',
  WORKER_LINGER_MS: '20',
  WORKER_CLAIM_IDLE_MS: '60000',
  WORKER_MAX_DELIVERIES: '5',
  WORKER_INSERT_CONCURRENCY: '2',
  CRON_QUEUE_DEPTH: '0 * * * * *',
  WORKER_METRICS_PORT: '9101',
  CRON_METRICS_PORT: '9102',
  CRON_ROLLUP: '*/30 * * * * *',
  CRON_RETENTION: '0 */5 * * * *',
  RAW_RETENTION_HOURS: '24',
  DEDUP_WINDOW_HOURS: '48',
  ROLLUP_HOUR_RETENTION_DAYS: '90',
  ROLLUP_PATH_CAP: '1000',
  ROLLUP_CHUNK_XIDS: '500',
  ROLLUP_SHARDS: '2',
  STATS_TOKEN: '',
  STATS_PUBLIC: 'false',
  SHUTDOWN_TIMEOUT_MS: '10000',
} as const

export type Env = Record<string, string | undefined>

const int = (min: number, max: number) =>
  v.pipe(
    v.string(),
    v.regex(/^\d+$/, 'must be a whole number'),
    v.transform(Number),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  )
const url = (...schemes: string[]) =>
  v.pipe(
    v.string(),
    v.url('must be a URL'),
    v.check((s) => schemes.some((p) => s.startsWith(`${p}://`)), `must start with ${schemes.join(':// or ')}://`),
  )
const bool = v.pipe(
  v.picklist(['true', 'false', '1', '0'], 'must be true or false'),
  v.transform((s) => s === 'true' || s === '1'),
)
const nonEmpty = v.pipe(v.string(), v.minLength(1, 'must not be empty'))
const list = v.pipe(
  v.string(),
  v.transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  ),
)

const EnvSchema = v.object({
  PORT: int(0, 65535),
  HOST: nonEmpty,
  REDIS_URL: v.pipe(
    url('redis', 'rediss'),
    // ioredis would take any other path as database 0: an API and a worker with different typos would use different queues.
    v.check((s) => {
      const path = URL.parse(s)?.pathname ?? '' // an unparseable URL is url()'s to report
      return /^\/?(\d{1,2})?\/?$/.test(path) && Number(path.replaceAll('/', '') || 0) <= 15
    }, 'the database (the path) must be 0-15, or none'),
  ),
  REDIS_CLUSTER_NODES: v.pipe(
    list,
    v.check((xs) => xs.every((n) => /^[^\s:]+:\d{1,5}$/.test(n)), 'must be a comma-separated list of host:port'),
  ),
  DATABASE_URL: url('postgres', 'postgresql'),
  LOG_LEVEL: v.picklist(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'must be one of fatal, error, warn, info, debug, trace, silent'),
  QUEUE_STREAM: nonEmpty,
  QUEUE_SHARDS: int(0, 1024),
  QUEUE_GROUP: nonEmpty,
  REDIS_TIMEOUT_MS: int(50, 60_000),
  REDIS_WAIT_REPLICAS: int(0, 100),
  REDIS_WAIT_TIMEOUT_MS: int(1, 60_000),
  QUEUE_MAX_BACKLOG: int(1, 1_000_000_000),
  QUEUE_ENTRY_MAX_EVENTS: int(1, 1000),
  INGEST_BODY_LIMIT_BYTES: int(1024, 64 * 1024 * 1024),
  INGEST_BATCH_MAX: int(1, 10_000),
  INGEST_MAX_FUTURE_MS: int(0, 24 * 3_600_000),
  INGEST_ALLOWED_SITES: list,
  INGEST_ALLOWED_ORIGINS: v.pipe(
    list,
    v.check(
      (xs) => xs.every((o) => /^https?:\/\/[^/]+$/.test(o)),
      'must be a comma-separated list of origins like https://example.com (scheme and host, no path)',
    ),
  ),
  INGEST_RATE_LIMIT: int(0, 10_000_000),
  INGEST_IN_FLIGHT_BYTES: int(1024, 1024 * 1024 * 1024),
  INGEST_BODY_TIMEOUT_MS: int(100, 600_000),
  INGEST_RATE_BURST: int(0, 10_000_000),
  TRUST_PROXY: bool,
  INGEST_FORWARD_TOKEN: v.string(),
  IDENTITY_KEY_PREFIX: nonEmpty,
  SITES_REGISTRY: bool,
  REGISTRY_REFRESH_MS: int(100, 60_000),
  QUERY_TIMEOUT_MS: int(0, 3_600_000),
  ADMIN_TOKEN: v.string(),
  ROLLUP_DIM_CAP: int(10, 100_000),
  VISIT_CLOSE_AFTER_MS: int(0, 7 * 24 * 3_600_000),
  WORKER_NAME: v.string(),
  WORKER_BATCH_SIZE: int(1, 10_000),
  WORKER_BLOCK_MS: int(1, 60_000),
  WORKER_LINGER_MS: int(0, 1000),
  WORKER_CLAIM_IDLE_MS: int(1000, 24 * 3_600_000),
  WORKER_MAX_DELIVERIES: int(1, 1000),
  WORKER_INSERT_CONCURRENCY: int(1, 16),
  CRON_QUEUE_DEPTH: v.pipe(nonEmpty, v.rawCheck<string>(cronPattern)),
  CRON_ROLLUP: v.pipe(nonEmpty, v.rawCheck<string>(cronPattern)),
  CRON_RETENTION: v.pipe(nonEmpty, v.rawCheck<string>(cronPattern)),
  RAW_RETENTION_HOURS: int(1, 24 * 365),
  WORKER_METRICS_PORT: int(0, 65535),
  CRON_METRICS_PORT: int(0, 65535),
  DEDUP_WINDOW_HOURS: int(1, 24 * 365),
  ROLLUP_HOUR_RETENTION_DAYS: int(0, 100 * 366),
  ROLLUP_PATH_CAP: int(10, 100_000),
  ROLLUP_CHUNK_XIDS: int(1, 1_000_000),
  ROLLUP_SHARDS: int(1, 64), // store/rollup.ts MAX_SHARDS
  STATS_TOKEN: v.string(),
  STATS_PUBLIC: bool,
  SHUTDOWN_TIMEOUT_MS: int(100, 600_000),
})

export type Config = Readonly<{
  port: number
  host: string
  redisUrl: string
  /** host:port of Redis Cluster nodes; null for a single Redis at redisUrl. */
  redisClusterNodes: readonly string[] | null
  databaseUrl: string
  logLevel: string
  redisTimeoutMs: number
  shutdownTimeoutMs: number
  queue: Readonly<{
    stream: string
    shards: number
    cluster: boolean
    group: string
    deadLetterStream: string
    waitReplicas: number
    waitTimeoutMs: number
    maxBacklog: number
    maxEntryEvents: number
  }>
  ingest: Readonly<{
    bodyLimitBytes: number
    batchMax: number
    maxFutureMs: number
    allowedSites: readonly string[] | null
    allowedOrigins: readonly string[] | null
    rateLimitPerSecond: number
    rateLimitBurst: number | undefined
    trustProxy: boolean
    inFlightBytes: number
    bodyTimeoutMs: number
    forwardToken: string | null
    /** Accept only events of sites in the registry (SITES_REGISTRY). */
    registry: boolean
  }>
  /** Where the daily visitor-id salts live in Redis: `<keyPrefix>:salt:<YYYY-MM-DD>`. */
  identity: Readonly<{ keyPrefix: string }>
  /** The sites registry's cache in each API process: how often it looks for changes. */
  registry: Readonly<{ refreshMs: number }>
  worker: Readonly<{
    name: string
    batchSize: number
    blockMs: number
    lingerMs: number
    claimIdleMs: number
    maxDeliveries: number
    insertConcurrency: number
  }>
  cron: Readonly<{ schedules: Readonly<Record<string, string>> }>
  rollup: Readonly<{ pathCap: number; dimCap: number; chunkXids: number; shards: number; visitCloseAfterMs: number }>
  /** Where worker and cron serve /metrics; 0 turns it off. */
  metricsPorts: Readonly<{ worker: number; cron: number }>
  retention: Readonly<{ rawRetentionHours: number; dedupWindowHours: number; hourRollupDays: number }>
  /** queryTimeoutMs: Postgres cancels an API query (stats, /v1/query, admin) that runs longer; 0: never. */
  stats: Readonly<{ token: string | null; public: boolean; queryTimeoutMs: number }>
  /** An all-sites admin token from the environment (ADMIN_TOKEN), besides those in the registry. */
  admin: Readonly<{ token: string | null }>
}>

/** A setting that cannot be used. The message names the variable: `config: REDIS_URL: must be a URL`. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID'
  constructor(message: string) {
    super(`config: ${message}`)
    this.name = 'ConfigError'
  }
}

/** The characters a bearer token may have (RFC 6750's b64token; internal/http/auth.ts reads the same). */
const BEARER_TOKEN = /^[A-Za-z0-9._~+/=-]+$/

/**
 * Reads the settings: an explicit override wins, then the environment, then DEFAULTS.
 * Throws ConfigError naming every bad variable.
 */
export function loadConfig(env: Env = process.env, overrides: Partial<Record<keyof typeof DEFAULTS, string>> = {}): Config {
  const raw: Record<string, string> = {}
  for (const key of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    raw[key] = overrides[key] ?? env[key] ?? DEFAULTS[key]
  }
  const parsed = v.safeParse(EnvSchema, raw)
  if (!parsed.success) {
    const problems = parsed.issues.map((i) => `${v.getDotPath(i) ?? '?'}: ${i.message}`)
    throw new ConfigError(problems.join('; '))
  }
  const e = parsed.output
  if (e.REDIS_CLUSTER_NODES.length && e.REDIS_WAIT_REPLICAS > 0) {
    throw new ConfigError(
      'REDIS_WAIT_REPLICAS: is not supported with REDIS_CLUSTER_NODES (WAIT would go to one node); use appendfsync always on the cluster instead',
    )
  }
  if (e.INGEST_RATE_LIMIT > 0 && e.INGEST_RATE_BURST > 0 && e.INGEST_RATE_BURST < e.INGEST_BATCH_MAX) {
    throw new ConfigError(
      `INGEST_RATE_BURST: must be at least INGEST_BATCH_MAX (${e.INGEST_BATCH_MAX}), or a full batch would be refused with 429 however long its sender waits`,
    )
  }
  for (const key of ['STATS_TOKEN', 'ADMIN_TOKEN', 'INGEST_FORWARD_TOKEN'] as const) {
    if (e[key] !== '' && !BEARER_TOKEN.test(e[key])) {
      throw new ConfigError(`${key}: must be made of A-Z a-z 0-9 . _ ~ + / = - (what "Authorization: Bearer" carries), or no request could present it`)
    }
  }
  if (e.SITES_REGISTRY && e.INGEST_ALLOWED_SITES.length) {
    throw new ConfigError('INGEST_ALLOWED_SITES: must be empty with SITES_REGISTRY=true, which takes the allowed sites from the registry')
  }
  return deepFreeze({
    port: e.PORT,
    host: e.HOST,
    redisUrl: e.REDIS_URL,
    redisClusterNodes: e.REDIS_CLUSTER_NODES.length ? e.REDIS_CLUSTER_NODES : null,
    databaseUrl: e.DATABASE_URL,
    logLevel: e.LOG_LEVEL,
    redisTimeoutMs: e.REDIS_TIMEOUT_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    queue: {
      stream: e.QUEUE_STREAM,
      // 0 means: 1 on a single Redis, 6 on a cluster (two per master of a three-master cluster).
      shards: e.QUEUE_SHARDS || (e.REDIS_CLUSTER_NODES.length ? 6 : 1),
      cluster: e.REDIS_CLUSTER_NODES.length > 0,
      group: e.QUEUE_GROUP,
      deadLetterStream: `${e.QUEUE_STREAM}:dead`,
      waitReplicas: e.REDIS_WAIT_REPLICAS,
      waitTimeoutMs: e.REDIS_WAIT_TIMEOUT_MS,
      maxBacklog: e.QUEUE_MAX_BACKLOG,
      maxEntryEvents: e.QUEUE_ENTRY_MAX_EVENTS,
    },
    ingest: {
      bodyLimitBytes: e.INGEST_BODY_LIMIT_BYTES,
      batchMax: e.INGEST_BATCH_MAX,
      maxFutureMs: e.INGEST_MAX_FUTURE_MS,
      allowedSites: e.INGEST_ALLOWED_SITES.length ? e.INGEST_ALLOWED_SITES : null,
      allowedOrigins: e.INGEST_ALLOWED_ORIGINS.length ? e.INGEST_ALLOWED_ORIGINS : null,
      rateLimitPerSecond: e.INGEST_RATE_LIMIT,
      rateLimitBurst: e.INGEST_RATE_BURST || undefined,
      trustProxy: e.TRUST_PROXY,
      inFlightBytes: e.INGEST_IN_FLIGHT_BYTES,
      bodyTimeoutMs: e.INGEST_BODY_TIMEOUT_MS,
      forwardToken: e.INGEST_FORWARD_TOKEN || null,
      registry: e.SITES_REGISTRY,
    },
    identity: { keyPrefix: e.IDENTITY_KEY_PREFIX },
    registry: { refreshMs: e.REGISTRY_REFRESH_MS },
    worker: {
      name: e.WORKER_NAME || `${hostname()}-${process.pid}`,
      batchSize: e.WORKER_BATCH_SIZE,
      blockMs: e.WORKER_BLOCK_MS,
      lingerMs: e.WORKER_LINGER_MS,
      claimIdleMs: e.WORKER_CLAIM_IDLE_MS,
      maxDeliveries: e.WORKER_MAX_DELIVERIES,
      insertConcurrency: e.WORKER_INSERT_CONCURRENCY,
    },
    cron: { schedules: { 'queue-depth': e.CRON_QUEUE_DEPTH, rollup: e.CRON_ROLLUP, retention: e.CRON_RETENTION } },
    rollup: {
      pathCap: e.ROLLUP_PATH_CAP,
      dimCap: e.ROLLUP_DIM_CAP,
      chunkXids: e.ROLLUP_CHUNK_XIDS,
      shards: e.ROLLUP_SHARDS,
      visitCloseAfterMs: e.VISIT_CLOSE_AFTER_MS,
    },
    metricsPorts: { worker: e.WORKER_METRICS_PORT, cron: e.CRON_METRICS_PORT },
    retention: { rawRetentionHours: e.RAW_RETENTION_HOURS, dedupWindowHours: e.DEDUP_WINDOW_HOURS, hourRollupDays: e.ROLLUP_HOUR_RETENTION_DAYS },
    stats: { token: e.STATS_TOKEN || null, public: e.STATS_PUBLIC, queryTimeoutMs: e.QUERY_TIMEOUT_MS },
    admin: { token: e.ADMIN_TOKEN || null },
  })
}

/**
 * For `bun run start` (local use): when stats would need a token and none is set, a random
 * one for this run, to hand to every binary it starts; null when none is needed. Reads the
 * environment through loadConfig, so STATS_PUBLIC=1 means what it means everywhere.
 */
export function localStatsToken(env: Env = process.env): string | null {
  const config = loadConfig(env)
  if (config.stats.token || config.stats.public) return null
  return randomBytes(18).toString('base64url')
}

/** The API serves stats only behind a token, unless the operator says otherwise out loud. */
export function requireStatsAccess(config: Config): void {
  if (!config.stats.token && !config.stats.public) {
    throw new ConfigError('STATS_TOKEN: must be set so that stats need a token (or set STATS_PUBLIC=true to serve stats without one)')
  }
}

/** Tokens shorter than this can be guessed by anyone who can reach the API: it warns at start. */
export const STRONG_TOKEN_CHARS = 16

/** The bearer tokens set from the environment that are shorter than STRONG_TOKEN_CHARS, by name. */
export function weakTokens(config: Config): string[] {
  const set = { STATS_TOKEN: config.stats.token, ADMIN_TOKEN: config.admin.token, INGEST_FORWARD_TOKEN: config.ingest.forwardToken }
  return Object.entries(set)
    .filter(([, token]) => token !== null && token.length < STRONG_TOKEN_CHARS)
    .map(([name]) => name)
}

function cronPattern({ dataset, addIssue }: { dataset: { value: unknown }; addIssue: (i: { message: string }) => void }) {
  try {
    new Cron(String(dataset.value), { paused: true }).stop()
  } catch (err) {
    addIssue({ message: `not a valid cron pattern (${(err as Error).message})` })
  }
}

function deepFreeze<T extends object>(o: T): T {
  for (const value of Object.values(o)) if (value && typeof value === 'object') deepFreeze(value)
  return Object.freeze(o)
}
