// Package testkit gives each test its own Postgres database and its own Redis key
// prefix on the real servers, so tests never share state and can run in any order.
import { afterAll, beforeAll } from 'bun:test'
import { createServer } from 'node:net'
import Redis from 'ioredis'
import postgres from 'postgres'
import { createSql, type Sql } from '../clients/clients.ts'
import { loadConfig } from '../config/config.ts'
import { scriptCommand } from '../lifecycle/scripts.ts'
import type { QueueOptions } from '../queue/queue.ts'
import { migrate } from '../store/migrate.ts'
import { rollupLag } from '../store/rollup.ts'

const base = loadConfig(process.env, { STATS_PUBLIC: 'true' })

/** A unique, lower-case name part, e.g. for a database or a key prefix. */
export const uniqueName = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`

export type TestDatabase = { url: string; sql: Sql; drop: () => Promise<void> }

/** Creates an empty, migrated database of the test's own; `drop` removes it. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = uniqueName('sluice_test')
  const admin = adminSql()
  await admin`create database ${admin(name)}`
  const url = withDatabase(base.databaseUrl, name)
  const sql = createSql(url, { max: 4 })
  await migrate(sql)
  return {
    url,
    sql,
    async drop() {
      await sql.end({ timeout: 1 })
      await admin`drop database if exists ${admin(name)} with (force)`
      await admin.end({ timeout: 1 })
    },
  }
}

export type TestRedis = { url: string; redis: Redis; queue: QueueOptions & { stream: string }; cleanup: () => Promise<void> }

/** A Redis client and queue key names under a prefix of the test's own; `cleanup` deletes the keys. */
export async function createTestRedis(): Promise<TestRedis> {
  const prefix = uniqueName('test')
  const redis = new Redis(base.redisUrl, { lazyConnect: true })
  await redis.connect()
  const queue = { stream: `${prefix}:events`, group: 'sluice-workers', deadLetterStream: `${prefix}:events:dead` }
  return {
    url: base.redisUrl,
    redis,
    queue,
    async cleanup() {
      // Shard keys put the prefix inside a hash tag: {prefix:events:0.1}.
      const keys = [...(await redis.keys(`${prefix}:*`)), ...(await redis.keys(`{${prefix}:*`))]
      if (keys.length) await redis.del(...keys)
      redis.disconnect()
    },
  }
}

/** Environment for a spawned binary that points it at the test's database and keys. */
export function envFor(db: { url: string }, r: { url: string; queue: { stream: string } }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...(process.env as Record<string, string>),
    DATABASE_URL: db.url,
    REDIS_URL: r.url,
    QUEUE_STREAM: r.queue.stream,
    // The daily visitor-id salts, under the test's own prefix too.
    IDENTITY_KEY_PREFIX: `${r.queue.stream}:identity`,
    LOG_LEVEL: 'warn',
    // Many workers and crons run at once in tests: no fixed metrics ports unless a test asks.
    WORKER_METRICS_PORT: '0',
    CRON_METRICS_PORT: '0',
    ...extra,
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes, then returns the last value. */
export async function eventually<T>(fn: () => Promise<T>, { timeoutMs = 10_000, intervalMs = 50 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await fn()
    if (value || Date.now() > deadline) return value
    await Bun.sleep(intervalMs)
  }
}

function adminSql() {
  return postgres(withDatabase(base.databaseUrl, 'postgres'), { max: 1, onnotice: () => {} })
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url)
  u.pathname = `/${name}`
  return u.toString()
}

const ROOT = new URL('../../', import.meta.url).pathname

export type Binary = {
  proc: Bun.Subprocess<'ignore', 'pipe', 'pipe'>
  /** Everything the process wrote so far, stdout and stderr together. */
  output: () => string
  /** Sends SIGTERM (or the signal given; null sends none) and resolves with the exit code. */
  stop: (signal?: NodeJS.Signals | null) => Promise<number>
}

/** Starts a binary as a real process of its own, exactly as its package.json script does (`bun run <name>`). */
export function spawnBinary(name: string, env: Record<string, string>, args: string[] = []): Binary {
  return spawnCommand([...scriptCommand(ROOT, name), ...args], env)
}

/** Starts any command from the repository's root, collecting its output; `stop` signals it (or, given null, only waits). */
export function spawnCommand(command: string[], env: Record<string, string>): Binary {
  const proc = Bun.spawn(command, { cwd: ROOT, env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
  let text = ''
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder()
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true })
  }
  const drained = Promise.all([drain(proc.stdout), drain(proc.stderr)])
  return {
    proc,
    output: () => text,
    async stop(signal: NodeJS.Signals | null = 'SIGTERM') {
      if (signal) proc.kill(signal)
      const code = await proc.exited
      await drained
      return code
    },
  }
}

/** Runs a binary to completion and returns its exit code and output. */
export async function runBinary(name: string, env: Record<string, string>, args: string[] = []): Promise<{ code: number; output: string }> {
  const b = spawnBinary(name, env, args)
  const code = await b.proc.exited
  await Bun.sleep(10)
  return { code, output: b.output() }
}

/** Waits until `url` answers 200, or throws with the process output after `timeoutMs`. */
export async function waitForReady(url: string, binary: Binary, timeoutMs = 15_000): Promise<void> {
  const ok = await eventually(
    async () => {
      if (binary.proc.exitCode !== null) return true
      return fetch(url).then(
        (r) => r.ok,
        () => false,
      )
    },
    { timeoutMs },
  )
  if (!ok || binary.proc.exitCode !== null) throw new Error(`${url} never became ready:\n${binary.output()}`)
}

/**
 * A database and a Redis key prefix of the test file's own, made before its tests and
 * removed after them: `const env = isolated()`, then `env.db` and `env.r` inside tests.
 */
export function isolated(): { db: TestDatabase; r: TestRedis } {
  const ctx = {} as { db: TestDatabase; r: TestRedis }
  beforeAll(async () => {
    ;[ctx.db, ctx.r] = await Promise.all([createTestDatabase(), createTestRedis()])
  }, 60_000)
  afterAll(async () => {
    await ctx.r?.cleanup()
    await ctx.db?.drop()
  })
  return ctx
}

export type Pipeline = { db: TestDatabase; r: TestRedis; env: Record<string, string>; base: string; api: Binary; worker: Binary }

/**
 * The real API and worker as processes of their own, on the test file's own database and
 * key prefix, started before its tests and stopped after them. `extra` adds settings.
 */
export function pipeline(extra: Record<string, string> = {}): Pipeline {
  const ctx = {} as Pipeline
  beforeAll(async () => {
    ;[ctx.db, ctx.r] = await Promise.all([createTestDatabase(), createTestRedis()])
    const port = await freePort()
    ctx.base = `http://127.0.0.1:${port}`
    ctx.env = envFor(ctx.db, ctx.r, { PORT: String(port), WORKER_BLOCK_MS: '100', ...extra })
    ctx.api = spawnBinary('api', ctx.env)
    ctx.worker = spawnBinary('worker', ctx.env)
    await waitForReady(`${ctx.base}/readyz`, ctx.api)
  }, 60_000)
  // A binary may take up to SHUTDOWN_TIMEOUT_MS (10 s) to stop gracefully: more than the default hook timeout.
  afterAll(async () => {
    await Promise.all([ctx.api?.stop(), ctx.worker?.stop()])
    await ctx.r?.cleanup()
    await ctx.db?.drop()
  }, 30_000)
  return ctx
}

/**
 * Runs `cron --once rollup` on the pipeline's database until every stored event is counted
 * (a run stops short of events newer than a transaction still running anywhere on the
 * server, another test's say), then once more with VISIT_CLOSE_AFTER_MS=0, which closes
 * every visit into the visit rollups. Throws with cron's output if a run fails.
 */
export async function rollUpAll(stack: Pipeline): Promise<void> {
  const rollup = async (env: Record<string, string> = {}) => {
    const run = await runBinary('cron', { ...stack.env, ...env }, ['--once', 'rollup'])
    if (run.code !== 0) throw new Error(`cron --once rollup exited ${run.code}: ${run.output}`)
    return (await rollupLag(stack.db.sql)).unrolled === 0
  }
  if (!(await eventually(rollup, { timeoutMs: 120_000, intervalMs: 1000 }))) throw new Error('events were still not rolled up after 120 s')
  await rollup({ VISIT_CLOSE_AFTER_MS: '0' })
}

/** A seeded pseudo-random generator (mulberry32) of numbers in [0, 1): the same seed, the same workload. */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One sample's value from a Prometheus text exposition, e.g. metricValue(text, 'sluice_queue_length'); NaN when absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => (l.startsWith(`${name}{`) && l.includes(labels)) || l.startsWith(`${name} `))
  return line ? Number(line.split(' ').at(-1)) : Number.NaN
}

/**
 * `n` CJK characters (three UTF-8 bytes each) that no compressor can shrink, as Postgres
 * would shrink repeated text before an index sees it; `random` draws them, otherwise they
 * follow a fixed sequence.
 */
export function incompressibleCjk(n: number, random = false): string {
  return Array.from({ length: n }, (_, i) => String.fromCharCode(0x4e00 + (random ? Math.floor(Math.random() * 20_000) : (i * 7919) % 20_000))).join('')
}
