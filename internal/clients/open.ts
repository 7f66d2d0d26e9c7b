import type { Config } from '../config/config.ts'
import type { Logger } from '../log/log.ts'
import { requireSchema } from '../store/migrate.ts'
import { connectPostgres, connectRedis, createRedis, createSql, type RedisClient, type Sql } from './clients.ts'

export type Opened = { redis: RedisClient; sql: Sql }

/**
 * What every binary does first: connect to Redis and Postgres, and check that the database
 * has every migration, or fail with one clear line. It changes nothing: `bun run migrate`
 * prepares the database (store's prepareDatabase).
 */
export async function openClients(
  config: Config,
  role: string,
  log: Logger,
  { redisOfflineQueue = true, sqlMax = 10, statementTimeoutMs = 0 } = {},
): Promise<Opened> {
  const redis = createRedis(config.redisUrl, {
    name: `sluice-${role}`,
    commandTimeoutMs: config.redisTimeoutMs,
    offlineQueue: redisOfflineQueue,
    clusterNodes: config.redisClusterNodes,
  })
  await connectRedis(redis, config.redisClusterNodes?.join(',') ?? config.redisUrl)
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'))
  const sql = createSql(config.databaseUrl, { max: sqlMax, statementTimeoutMs })
  await connectPostgres(sql, config.databaseUrl)
  try {
    await requireSchema(sql, config.databaseUrl)
  } catch (err) {
    await sql.end({ timeout: 0 })
    redis.disconnect()
    throw err
  }
  return { redis, sql }
}
