// Package cron holds Sluice's scheduled jobs and runs them with croner, either on
// their schedules or once by name (`cmd/cron --once <job>`).
import { Cron } from 'croner'
import type { Logger } from '../log/log.ts'
import type { Queue } from '../queue/queue.ts'

export type Job = { name: string; run: (signal: AbortSignal) => Promise<unknown> }

export type JobsDeps = { queue: Queue; log: Logger }

/** Every job cron knows, by name. */
export function createJobs({ queue, log }: JobsDeps): Record<string, Job> {
  const jobs: Job[] = [
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

/** Throws a clear error when a croner pattern is invalid, e.g. while validating config. */
export function checkPattern(pattern: string): void {
  new Cron(pattern, { paused: true }).stop()
}
