import { describe, expect, test } from 'bun:test'
import { ConfigError, DEFAULTS, loadConfig, requireStatsAccess, weakTokens } from './config.ts'

describe('config', () => {
  test('uses the defaults for an empty environment, pointing at the local services', () => {
    const c = loadConfig({})
    expect(c).toMatchObject({
      port: 8080,
      redisUrl: 'redis://127.0.0.1:6379',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/sluice',
      queue: { stream: 'sluice:events', group: 'sluice-workers', deadLetterStream: 'sluice:events:dead' },
      ingest: { bodyLimitBytes: 1048576, batchMax: 1000, maxFutureMs: 300000 },
      worker: { batchSize: 2000 },
      stats: { token: null, public: false },
    })
    expect(Object.isFrozen(c) && Object.isFrozen(c.queue)).toBe(true)
  })

  test('prefers an explicit value over the environment, and the environment over the default', () => {
    expect(loadConfig({ PORT: '9000' }).port).toBe(9000)
    expect(loadConfig({ PORT: '9000' }, { PORT: '9001' }).port).toBe(9001)
  })

  test.each([
    [{ PORT: 'abc' }, 'config: PORT: must be a whole number'],
    [{ PORT: '70000' }, 'config: PORT: must be at most 65535'],
    [{ REDIS_URL: 'not a url' }, 'config: REDIS_URL: must be a URL'],
    [{ REDIS_URL: 'localhost:6379' }, 'config: REDIS_URL: must start with redis:// or rediss://'],
    [{ REDIS_URL: 'redis://127.0.0.1:6379/99' }, 'config: REDIS_URL: the database (the path) must be 0-15, or none'],
    [{ REDIS_URL: 'redis://127.0.0.1:6379/abc' }, 'config: REDIS_URL: the database (the path) must be 0-15, or none'],
    [{ INGEST_FORWARD_TOKEN: 'fwd ' }, 'config: INGEST_FORWARD_TOKEN: must be made of A-Z a-z 0-9'],
    [{ DATABASE_URL: 'mysql://x/y' }, 'config: DATABASE_URL: must start with postgres:// or postgresql://'],
    [{ STATS_PUBLIC: 'yes' }, 'config: STATS_PUBLIC: must be true or false'],
    [{ CRON_QUEUE_DEPTH: 'every minute' }, 'config: CRON_QUEUE_DEPTH: not a valid cron pattern'],
    [{ WORKER_BATCH_SIZE: '0' }, 'config: WORKER_BATCH_SIZE: must be at least 1'],
    [{ SITES_REGISTRY: 'true', INGEST_ALLOWED_SITES: 'a,b' }, 'config: INGEST_ALLOWED_SITES: must be empty with SITES_REGISTRY=true'],
    [{ REGISTRY_REFRESH_MS: '10' }, 'config: REGISTRY_REFRESH_MS: must be at least 100'],
  ])('rejects %p with a message naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError)
    expect(() => loadConfig(env)).toThrow(message)
  })

  test('names every bad variable at once', () => {
    expect(() => loadConfig({ PORT: 'x', LOG_LEVEL: 'loud' })).toThrow(/PORT: .*; LOG_LEVEL: /)
  })

  test('refuses to serve stats without a token unless STATS_PUBLIC=true', () => {
    expect(() => requireStatsAccess(loadConfig({}))).toThrow('config: STATS_TOKEN: must be set')
    expect(() => requireStatsAccess(loadConfig({ STATS_TOKEN: 't' }))).not.toThrow()
    expect(() => requireStatsAccess(loadConfig({ STATS_PUBLIC: 'true' }))).not.toThrow()
  })

  test('refuses a token no Authorization header could carry, and a rate-limit burst smaller than a batch', () => {
    expect(() => loadConfig({ STATS_TOKEN: 's3cret!' })).toThrow(/STATS_TOKEN: must be made of/)
    expect(() => loadConfig({ ADMIN_TOKEN: 'two words' })).toThrow(/ADMIN_TOKEN: must be made of/)
    expect(loadConfig({ STATS_TOKEN: 'sl_A-z0.9~+/=', ADMIN_TOKEN: 'x' }).stats.token).toBe('sl_A-z0.9~+/=')
    expect(() => loadConfig({ INGEST_RATE_LIMIT: '10', INGEST_RATE_BURST: '20', INGEST_BATCH_MAX: '100' })).toThrow(
      /INGEST_RATE_BURST: must be at least INGEST_BATCH_MAX \(100\)/,
    )
    expect(loadConfig({ INGEST_RATE_LIMIT: '10', INGEST_BATCH_MAX: '100' }).ingest.rateLimitBurst).toBeUndefined()
    expect(loadConfig({ INGEST_RATE_LIMIT: '10', INGEST_RATE_BURST: '100', INGEST_BATCH_MAX: '100' }).ingest.rateLimitBurst).toBe(100)
  })

  test('has a default for every setting', () => {
    for (const key of Object.keys(DEFAULTS)) expect(typeof DEFAULTS[key as keyof typeof DEFAULTS]).toBe('string')
  })

  test('names the bearer tokens short enough to guess, for the API to warn about', () => {
    const config = loadConfig({ STATS_TOKEN: 'short', ADMIN_TOKEN: 'a-long-enough-admin-token', INGEST_FORWARD_TOKEN: 'fwd' })
    expect(weakTokens(config)).toEqual(['STATS_TOKEN', 'INGEST_FORWARD_TOKEN'])
    expect(weakTokens(loadConfig({}))).toEqual([])
  })
})
