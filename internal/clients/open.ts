import type { Config } from '../config/config.ts'
import type { Logger } from '../log/log.ts'
import { ensureDatabase, migrate } from '../store/migrate.ts'
import { ensurePartitions } from '../store/retention.ts'
import { connectPostgres, connectRedis, createRedis, createSql, type RedisClient, type Sql } from './clients.ts'

export type Opened = { redis: RedisClient; sql: Sql }

/**
 * What every binary does first: connect to Redis and Postgres (or fail with one clear line),
 * create the database if it is missing, and apply pending migrations.
 */
export async function openClients(config: Config, role: string, log: Logger, { redisOfflineQueue = true, sqlMax = 10 } = {}): Promise<Opened> {
  const redis = createRedis(config.redisUrl, {
    name: `sluice-${role}`,
    commandTimeoutMs: config.redisTimeoutMs,
    offlineQueue: redisOfflineQueue,
    clusterNodes: config.redisClusterNodes,
  })
  await connectRedis(redis, config.redisClusterNodes?.join(',') ?? config.redisUrl)
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'))
  // Creating the database needs the maintenance database; a managed Postgres may refuse, and then
  // connectPostgres reports the real problem.
  await ensureDatabase(config.databaseUrl).catch(() => false)
  const sql = createSql(config.databaseUrl, { max: sqlMax })
  await connectPostgres(sql, config.databaseUrl)
  const applied = await migrate(sql)
  if (applied.length) log.info({ applied }, 'applied migrations')
  await ensurePartitions(sql)
  return { redis, sql }
}
