// sluice-worker: moves events from the Redis stream (every shard of it) into Postgres.
import { duplicateRedis } from '../../internal/clients/clients.ts'
import { openClients } from '../../internal/clients/open.ts'
import { loadConfig } from '../../internal/config/config.ts'
import { exitIfStopTakesLonger, onStopSignals, shutdown } from '../../internal/lifecycle/lifecycle.ts'
import { EXIT } from '../../internal/lifecycle/exit-codes.ts'
import { runMain } from '../../internal/lifecycle/run.ts'
import { createLogger } from '../../internal/log/log.ts'
import { createMetrics, registerQueueGauges, serveMetrics } from '../../internal/metrics/metrics.ts'
import { createShardedQueue } from '../../internal/queue/shards.ts'
import { createStore } from '../../internal/store/store.ts'
import { createWorker } from '../../internal/worker/worker.ts'

await runMain('worker', async () => {
  const config = loadConfig()
  const log = createLogger({ level: config.logLevel, name: 'worker' })
  const { redis, sql } = await openClients(config, 'worker', log, { sqlMax: config.worker.insertConcurrency + 1 })
  const store = createStore(sql)
  const { name, ...options } = config.worker
  const queue = createShardedQueue(redis, config.queue)
  const metrics = createMetrics('worker')
  registerQueueGauges(metrics, queue)
  const metricsServer = serveMetrics(metrics, config.metricsPorts.worker, { avoid: Object.values(config.metricsPorts), log })
  // Shards of an earlier QUEUE_SHARDS that still hold entries are drained too, for as long
  // as this process runs, so changing the setting strands nothing.
  const stranded = await queue.stranded()
  for (const { queue: old, length } of stranded) {
    log.warn({ stream: old.stream, entries: length, queue_shards: config.queue.shards }, 'draining a shard of another QUEUE_SHARDS that still holds entries')
  }
  // One consumer loop per shard, each with a blocking reader of its own.
  const readers = [...queue.shards, ...stranded.map((s) => s.queue)].map((queue) => {
    const reader = duplicateRedis(redis, 'sluice-worker-reader')
    reader.on('error', (err) => log.warn({ err: err.message }, 'redis reader connection error'))
    const deps = { queue, store, reader, metrics, log: log.child({ stream: queue.stream }) }
    return { reader, worker: createWorker(deps, { consumer: name, maxEntryEvents: config.queue.maxEntryEvents, ...options }) }
  })
  const stop = onStopSignals(log)
  exitIfStopTakesLonger(stop, config.shutdownTimeoutMs, log)
  log.info({ consumer: name, streams: readers.length, group: config.queue.group }, 'worker started')

  await Promise.all(readers.map(({ worker }) => worker.run(stop)))
  const ok = await shutdown(
    log,
    [
      ['stop metrics server', () => metricsServer?.stop()],
      ['close postgres', () => sql.end({ timeout: 5 })],
      ['close redis readers', () => Promise.all(readers.map(({ reader }) => reader.quit()))],
      ['close redis', () => redis.quit()],
    ],
    config.shutdownTimeoutMs,
  )
  return ok ? EXIT.ok : EXIT.failed
})
