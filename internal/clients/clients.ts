// Package clients opens the Redis and Postgres connections every binary needs,
// and turns "cannot connect" into one line that says what was tried and how to fix it.
import Redis, { Cluster } from 'ioredis'
import postgres from 'postgres'

export type Sql = postgres.Sql

/** A dependency was unreachable at start. The message is meant to be the only line the operator needs. */
export class UnreachableError extends Error {
  readonly code = 'DEPENDENCY_UNREACHABLE'
  constructor(message: string) {
    super(message)
    this.name = 'UnreachableError'
  }
}

/** A single Redis or a Redis Cluster: the commands Sluice uses work the same on both. */
export type RedisClient = Redis | Cluster

export type RedisOptions = {
  /** Shown in CLIENT LIST, e.g. "sluice-api". */
  name: string
  /** Fail commands after this long instead of waiting; blocking reads are exempt. */
  commandTimeoutMs?: number
  /** When false, commands fail at once while disconnected instead of queueing (the API's choice). */
  offlineQueue?: boolean
  /** host:port of some cluster nodes; when given, a Cluster client instead of one to `url`. */
  clusterNodes?: readonly string[] | null
}

// Reconnect forever, backing off to 2 s: Redis coming back must heal every binary without a restart.
const backoff = (times: number) => Math.min(times * 100, 2000) + Math.floor(Math.random() * 100)

export function createRedis(url: string, { name, commandTimeoutMs, offlineQueue = true, clusterNodes = null }: RedisOptions): RedisClient {
  const options = {
    lazyConnect: true,
    connectionName: name,
    commandTimeout: commandTimeoutMs,
    maxRetriesPerRequest: offlineQueue ? 20 : 0,
    retryStrategy: backoff,
  }
  if (clusterNodes?.length) {
    return new Cluster(
      clusterNodes.map((n) => ({ host: n.slice(0, n.lastIndexOf(':')), port: Number(n.slice(n.lastIndexOf(':') + 1)) })),
      { lazyConnect: true, enableOfflineQueue: offlineQueue, clusterRetryStrategy: backoff, redisOptions: options },
    )
  }
  return new Redis(url, { ...options, enableOfflineQueue: offlineQueue })
}

/** A second connection of the same kind, e.g. for a blocking reader. */
export function duplicateRedis(redis: RedisClient, name: string): RedisClient {
  return redis instanceof Cluster
    ? redis.duplicate(undefined, { redisOptions: { ...redis.options.redisOptions, connectionName: name, commandTimeout: undefined } })
    : redis.duplicate({ connectionName: name, commandTimeout: undefined })
}

/** Connects and PINGs, or throws UnreachableError. */
export async function connectRedis(redis: RedisClient, url: string, timeoutMs = 5000): Promise<void> {
  const cluster = redis instanceof Cluster
  const target = cluster ? `the Redis Cluster at ${url}` : `Redis at ${redact(url)}`
  const fix = cluster ? 'check the cluster, or set REDIS_CLUSTER_NODES to reachable nodes' : 'start redis-server, or set REDIS_URL to a reachable server'
  let lastError: unknown
  const remember = (err: unknown) => (lastError = err)
  redis.on('error', remember)
  try {
    await withTimeout(
      (async () => {
        if (redis.status === 'wait') await redis.connect()
        await redis.ping()
      })(),
      timeoutMs,
    )
  } catch (err) {
    redis.disconnect()
    throw new UnreachableError(`cannot reach ${target} (${reason(lastError ?? err)}): ${fix}`)
  } finally {
    redis.off('error', remember)
  }
}

/** `statementTimeoutMs`: Postgres cancels any statement of these connections that runs longer (0: never). */
export function createSql(url: string, { max = 10, statementTimeoutMs = 0 }: { max?: number; statementTimeoutMs?: number } = {}): Sql {
  return postgres(url, {
    max,
    connect_timeout: 5,
    onnotice: () => {},
    // UTC whatever the server's TimeZone (Debian's initdb copies the system's): every time the
    // SQL reads or writes without a zone means UTC.
    connection: { application_name: 'sluice', TimeZone: 'UTC', ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}) },
  })
}

/**
 * Postgres's clock: what stamps inserted_at, seen_at, removed_at and revoked_at, so what their
 * cutoffs are taken from, whatever this host's clock says.
 */
export async function databaseNow(sql: Sql): Promise<Date> {
  return (await sql`select now() as now`)[0]!.now as Date
}

/**
 * Runs `select 1`, or throws UnreachableError. Bounded in time: postgres.js's connect_timeout
 * covers the TCP connect only, and a server that answers in another protocol and closes (an
 * HTTP port) makes it reconnect at once, forever.
 */
export async function connectPostgres(sql: Sql, url: string, timeoutMs = 10_000): Promise<void> {
  try {
    await withTimeout(sql`select 1`.execute(), timeoutMs, `no Postgres answer within ${timeoutMs / 1000} s: is it a Postgres server?`)
  } catch (err) {
    await sql.end({ timeout: 0 }).catch(() => {})
    // A server that answered with an error (a role or database that does not exist) is reachable: say what it said.
    const code = (err as { code?: string }).code
    const answered = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith('08')
    throw new UnreachableError(
      answered
        ? `Postgres at ${redact(url)} refused the connection: ${(err as Error).message} (${code}); set DATABASE_URL to a role and database that exist`
        : `cannot reach Postgres at ${redact(url)} (${reason(err)}): start PostgreSQL, or set DATABASE_URL to a reachable database`,
    )
  }
}

/** Hides the password in a connection URL. */
export function redact(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '<unparseable URL>'
  }
}

function reason(err: unknown): string {
  if (err instanceof Error) return (err as { code?: string }).code ?? err.message
  return String(err)
}

/** Rejects with `message` if `p` has not settled within `ms`; the timer is cleared either way. */
export function withTimeout<T>(p: Promise<T>, ms: number, message = `timed out after ${ms} ms`): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}
