// Package cron holds Sluice's scheduled jobs and runs them with croner, either on
// their schedules or once by name (`cmd/cron --once <job>`).
import { Cron } from 'croner'
import type { Logger } from '../log/log.ts'
import { registerCollectedGauge, registerQueueGauges, type Metrics } from '../metrics/metrics.ts'
import type { Depth } from '../queue/queue.ts'
import type { RollupLag } from '../store/rollup.ts'
import type { Sites } from '../sites/sites.ts'
import type { Store } from '../store/store.ts'

export type Job = { name: string; run: (signal: AbortSignal) => Promise<unknown> }

export type JobsDeps = {
  /** `stranded`: shards of another QUEUE_SHARDS still holding entries (ShardedQueue's). */
  queue: { depth(): Promise<Depth>; stranded?: () => Promise<{ queue: { depth(): Promise<Depth> } }[]> }
  store: Store
  log: Logger
  metrics?: Metrics | null
  /** When given, retention also deletes again what arrived for recently removed sites. */
  sites?: Pick<Sites, 'sweepRemoved' | 'purgeRevokedTokens'> | null
}
export type JobsOptions = {
  rollup?: { pathCap?: number; dimCap?: number; chunkXids?: number; shards?: number; visitCloseAfterMs?: number }
  retention?: { rawRetentionHours?: number; dedupWindowHours?: number; hourRollupDays?: number }
}

/** Every job cron knows, by name. */
export function createJobs({ queue, store, log, metrics = null, sites = null }: JobsDeps, options: JobsOptions = {}): Record<string, Job> {
  // Events still in the queue hold back the closing of visits they may extend, also those in
  // shards of an earlier QUEUE_SHARDS that workers are draining. Unable to read the queue,
  // the rollup closes none this run rather than close one too early.
  const unstoredSince = async (): Promise<Date | null> => {
    try {
      const old = (await queue.stranded?.()) ?? []
      const depths = await Promise.all([queue.depth(), ...old.map((s) => s.queue.depth())])
      const waiting = depths.filter((d) => d.length > 0)
      return waiting.length ? new Date(Date.now() - Math.max(...waiting.map((d) => d.oldestEntryAgeMs))) : null
    } catch {
      return new Date(0)
    }
  }
  const jobs: Job[] = [
    {
      name: 'rollup',
      // Counts new raw events into the hour, day, month and year rollups, exactly once.
      async run(signal) {
        const started = performance.now()
        const result = await store.rollup({ ...options.rollup, signal, unstoredSince })
        const ms = Math.round(performance.now() - started)
        if (result.ran) {
          metrics?.cron.rollupDuration.observe(ms / 1000)
          metrics?.cron.rolledUp.inc(result.events)
          metrics?.cron.setAside.inc(result.setAside)
        }
        if (result.setAside) {
          log.error({ job: 'rollup', set_aside: result.setAside }, 'raw events the rollup cannot count were set aside; see `bun run sluice -- rollup-rejects`')
        }
        if (!result.ran) log.info({ job: 'rollup' }, 'other processes hold every rollup shard; skipped')
        else log.info({ job: 'rollup', ...result, duration_ms: ms, events_per_s: ms ? Math.round((result.events * 1000) / ms) : null }, 'rolled up')
        return result
      },
    },
    {
      name: 'retention',
      // Drops raw partitions past retention, once every row in them is rolled up.
      async run() {
        const result = await store.retention(options.retention)
        if (!result.ran) {
          log.info({ job: 'retention' }, 'another process is running retention; skipped')
          return result
        }
        const swept = (await sites?.sweepRemoved()) ?? []
        if (swept.length) log.info({ job: 'retention', swept }, 'deleted what arrived for removed sites (events queued when they were removed)')
        const purged = (await sites?.purgeRevokedTokens()) ?? 0
        if (purged) log.info({ job: 'retention', tokens: purged }, 'deleted tokens and links revoked long ago')
        metrics?.cron.partitionsDropped.inc(result.partitionsDropped.length)
        metrics?.cron.rowsDeleted.inc({ table: 'events_default' }, result.defaultRowsDeleted)
        metrics?.cron.rowsDeleted.inc({ table: 'event_ids' }, result.eventIdsDeleted)
        metrics?.cron.rowsDeleted.inc({ table: 'rollup_hour' }, result.hourRollupRowsDeleted)
        const level = result.partitionsKept.length ? 'warn' : 'info'
        log[level]({ job: 'retention', ...result }, result.partitionsKept.length ? 'kept expired partitions that are not rolled up yet' : 'retention done')
        return result
      },
    },
    {
      name: 'queue-depth',
      // Reports how much work is waiting, so a stuck or slow worker shows up in the log.
      async run() {
        const depth = await queue.depth()
        log.info({ job: 'queue-depth', ...depth }, 'queue depth')
        return depth
      },
    },
  ]
  return Object.fromEntries(jobs.map((j) => [j.name, j]))
}

/** Cron's gauges: the queue, and how far the rollups are behind. */
export function registerCronGauges(metrics: Metrics, queue: { depth(): Promise<Depth> }, store: Store) {
  registerQueueGauges(metrics, queue)
  // One query per scrape serves all three gauges.
  let lag: Promise<RollupLag> | null = null
  const read = (pick: (l: RollupLag) => number) => async () => {
    lag ??= store.rollupLag().finally(() => setTimeout(() => (lag = null), 100).unref())
    return pick(await lag)
  }
  registerCollectedGauge(
    metrics,
    'sluice_rollup_watermark_age_seconds',
    'How long the oldest raw event not yet rolled up has waited (0 when none waits); alert above 300',
    read((l) => l.ageSeconds),
  )
  registerCollectedGauge(
    metrics,
    'sluice_rollup_unrolled_events',
    'Raw events not yet counted in the rollups',
    read((l) => l.unrolled),
  )
  registerCollectedGauge(
    metrics,
    'sluice_rollup_rejected_events',
    'Raw events set aside in rollup_rejects, waiting for an operator',
    read((l) => l.rejected),
  )
}

export type Scheduler = { stop(): Promise<void> }

/**
 * Schedules each job whose name has a pattern in `schedules`. A job never overlaps itself
 * (protect), and a failure is logged rather than thrown (catch).
 */
export function schedule(jobs: Record<string, Job>, schedules: Readonly<Record<string, string>>, log: Logger): Scheduler {
  const controller = new AbortController()
  const crons: Cron[] = []
  for (const [name, pattern] of Object.entries(schedules)) {
    const job = jobs[name]
    if (!job) throw new Error(`cron: no job named ${name}; known jobs: ${Object.keys(jobs).join(', ')}`)
    crons.push(
      new Cron(
        pattern,
        {
          name,
          protect: (self) => log.warn({ job: name, started: self.currentRun() }, 'previous run still going; skipped this one'),
          catch: (err) => log.error({ err, job: name }, 'job failed'),
          timezone: 'UTC',
        },
        async () => {
          await job.run(controller.signal)
        },
      ),
    )
    log.info({ job: name, pattern, next_run: crons.at(-1)!.nextRun()?.toISOString() }, 'job scheduled')
  }
  return {
    async stop() {
      for (const c of crons) c.stop()
      controller.abort()
      // Let a run in progress finish; it sees the aborted signal.
      while (crons.some((c) => c.isBusy())) await Bun.sleep(50)
    },
  }
}
