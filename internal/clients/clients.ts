// Package clients opens the Redis and Postgres connections every binary needs,
// and turns "cannot connect" into one line that says what was tried and how to fix it.
import Redis from 'ioredis'
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

export type RedisOptions = {
  /** Shown in CLIENT LIST, e.g. "sluice-api". */
  name: string
  /** Fail commands after this long instead of waiting; blocking reads are exempt. */
  commandTimeoutMs?: number
  /** When false, commands fail at once while disconnected instead of queueing (the API's choice). */
  offlineQueue?: boolean
}

export function createRedis(url: string, { name, commandTimeoutMs, offlineQueue = true }: RedisOptions): Redis {
  return new Redis(url, {
    lazyConnect: true,
    connectionName: name,
    enableOfflineQueue: offlineQueue,
    commandTimeout: commandTimeoutMs,
    maxRetriesPerRequest: offlineQueue ? 20 : 0,
    // Reconnect forever, backing off to 2 s: Redis coming back must heal every binary without a restart.
    retryStrategy: (times) => Math.min(times * 100, 2000) + Math.floor(Math.random() * 100),
  })
}

/** Connects and PINGs, or throws UnreachableError. */
export async function connectRedis(redis: Redis, url: string, timeoutMs = 5000): Promise<void> {
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
    throw new UnreachableError(
      `cannot reach Redis at ${redact(url)} (${reason(lastError ?? err)}): start redis-server, or set REDIS_URL to a reachable server`,
    )
  } finally {
    redis.off('error', remember)
  }
}

export function createSql(url: string, { max = 10 }: { max?: number } = {}): Sql {
  return postgres(url, {
    max,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: 'sluice' },
  })
}

/** Runs `select 1`, or throws UnreachableError. */
export async function connectPostgres(sql: Sql, url: string): Promise<void> {
  try {
    await sql`select 1`
  } catch (err) {
    await sql.end({ timeout: 0 }).catch(() => {})
    throw new UnreachableError(
      `cannot reach Postgres at ${redact(url)} (${reason(err)}): start PostgreSQL, or set DATABASE_URL to a reachable database`,
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

export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}
