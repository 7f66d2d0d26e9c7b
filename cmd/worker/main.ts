// sluice-worker: moves events from the Redis stream into Postgres.
import { openClients } from '../../internal/clients/open.ts'
import { loadConfig } from '../../internal/config/config.ts'
import { onStopSignals, shutdown } from '../../internal/lifecycle/lifecycle.ts'
import { runMain } from '../../internal/lifecycle/run.ts'
import { createLogger } from '../../internal/log/log.ts'
import { createQueue } from '../../internal/queue/queue.ts'
import { createStore } from '../../internal/store/store.ts'
import { createWorker } from '../../internal/worker/worker.ts'

await runMain('worker', async () => {
  const config = loadConfig()
  const log = createLogger({ level: config.logLevel, name: 'worker' })
  const { redis, sql } = await openClients(config, 'worker', log, { sqlMax: config.worker.insertConcurrency + 1 })
  // The blocking read gets a connection of its own, apart from the one that acks.
  const reader = redis.duplicate({ connectionName: 'sluice-worker-reader', commandTimeout: undefined })
  reader.on('error', (err) => log.warn({ err: err.message }, 'redis reader connection error'))
  const worker = createWorker(
    { queue: createQueue(redis, config.queue), store: createStore(sql), reader, log },
    { consumer: config.worker.name, batchSize: config.worker.batchSize, blockMs: config.worker.blockMs, claimIdleMs: config.worker.claimIdleMs, maxDeliveries: config.worker.maxDeliveries, maxEntryEvents: config.queue.maxEntryEvents, insertConcurrency: config.worker.insertConcurrency },
  )
  const stop = onStopSignals(log)
  log.info({ consumer: config.worker.name, stream: config.queue.stream, group: config.queue.group }, 'worker started')

  await worker.run(stop)
  const ok = await shutdown(log, [
    ['close postgres', () => sql.end({ timeout: 5 })],
    ['close redis reader', () => reader.quit()],
    ['close redis', () => redis.quit()],
  ], config.shutdownTimeoutMs)
  return ok ? 0 : 1
})
