// sluice-cron: runs the scheduled jobs, or one job once with `--once <job>`.
import { parseArgs } from 'node:util'
import { openClients } from '../../internal/clients/open.ts'
import { loadConfig } from '../../internal/config/config.ts'
import { createJobs, registerCronGauges, schedule } from '../../internal/cron/cron.ts'
import { exitIfStopTakesLonger, onStopSignals, shutdown } from '../../internal/lifecycle/lifecycle.ts'
import { EXIT } from '../../internal/lifecycle/exit-codes.ts'
import { aborted, runMain } from '../../internal/lifecycle/run.ts'
import { createLogger } from '../../internal/log/log.ts'
import { createMetrics, serveMetrics } from '../../internal/metrics/metrics.ts'
import { createShardedQueue } from '../../internal/queue/shards.ts'
import { createSites } from '../../internal/sites/sites.ts'
import { createStore } from '../../internal/store/store.ts'

await runMain('cron', async () => {
  const { values } = parseArgs({ options: { once: { type: 'string' } } })
  const config = loadConfig()
  const log = createLogger({ level: config.logLevel, name: 'cron' })
  // A connection per rollup shard, and two for retention and the gauges meanwhile.
  const { redis, sql } = await openClients(config, 'cron', log, { sqlMax: config.rollup.shards + 2 })
  const queue = createShardedQueue(redis, config.queue)
  const store = createStore(sql)
  const metrics = createMetrics('cron')
  registerCronGauges(metrics, queue, store)
  const jobs = createJobs({ queue, store, log, metrics, sites: createSites(sql) }, config)
  const stop = onStopSignals(log)
  exitIfStopTakesLonger(stop, config.shutdownTimeoutMs, log)
  let code: number = EXIT.ok

  if (values.once !== undefined) {
    const job = jobs[values.once]
    if (!job) {
      console.error(`sluice-cron: no job named ${JSON.stringify(values.once)}; known jobs: ${Object.keys(jobs).join(', ')}`)
      code = EXIT.usage
    } else {
      code = await job.run(stop).then(
        () => EXIT.ok,
        (err) => {
          log.error({ err, job: job.name }, 'job failed')
          return EXIT.failed
        },
      )
    }
  } else {
    const scheduler = schedule(jobs, config.cron.schedules, log)
    const metricsServer = serveMetrics(metrics, config.metricsPorts.cron, { avoid: Object.values(config.metricsPorts), log })
    await aborted(stop)
    await scheduler.stop()
    await metricsServer?.stop()
  }
  const ok = await shutdown(
    log,
    [
      ['close postgres', () => sql.end({ timeout: 5 })],
      ['close redis', () => redis.quit()],
    ],
    config.shutdownTimeoutMs,
  )
  if (values.once === undefined) log.info('cron stopped')
  return ok ? code : code || EXIT.failed
})
