import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync } from 'node:fs'
import { envFor, eventually, freePort, isolated, spawnCommand, waitForReady } from '../../internal/testkit/testkit.ts'

// One Ctrl-C stops everything gracefully. A terminal sends SIGINT to the whole foreground
// process group: `bun run`, the supervisor and every binary get it, and then `bun run`
// forwards it and the supervisor sends SIGTERM too. None of that may count as a second,
// "exit now" signal.

const env = isolated()
const RUNS = 10

/** `bun run <script>` as a terminal would run it: a process group of its own, led by it (setsid execs bun in place). */
const runInGroup = (script: string, vars: Record<string, string>) => spawnCommand(['setsid', 'bun', 'run', script], vars)

/** Whether a process of the group runs a command line that contains `text`; read from /proc, as spawning pgrep is too slow under load. */
function groupRuns(pgid: number, text: string): boolean {
  return readdirSync('/proc').some((pid) => {
    if (!/^\d+$/.test(pid)) return false
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8') // pid (comm) state ppid pgrp ...
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === pgid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text)
    } catch {
      return false // it has exited since
    }
  })
}

/** Posts events until stopped; returns the event_ids answered 202. */
function steadyLoad(base: string) {
  const accepted: string[] = []
  let stopping = false
  const run = (async () => {
    while (!stopping) {
      const event_id = crypto.randomUUID()
      const res = await fetch(`${base}/event`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ event_id, site_id: 'ctrl-c', event_type: 'pageview', timestamp: new Date().toISOString() }),
      }).catch(() => null)
      if (res?.status === 202) accepted.push(event_id)
      if (!res) break // the API has stopped listening
    }
  })()
  const stop = async () => {
    stopping = true
    await run
  }
  return { accepted, stop }
}

/** Every accepted event is in Postgres or still on the stream for the next worker. */
async function unaccounted(ids: string[]): Promise<string[]> {
  const stored = new Set((await env.db.sql`select event_id::text as id from events where event_id = any(${ids}::uuid[])`).map((r) => r.id as string))
  const queued = new Set(
    (await env.r.redis.xrange(env.r.queue.stream, '-', '+'))
      .flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!) as { event_id: string }[])
      .map((e) => e.event_id),
  )
  return ids.filter((id) => !stored.has(id) && !queued.has(id))
}

describe('one Ctrl-C', () => {
  for (const script of ['start', 'api'] as const) {
    test(`on bun run ${script}, ${RUNS} times, stops every binary gracefully with exit 0 and loses nothing accepted`, async () => {
      const codes: number[] = []
      const accepted: string[] = []
      for (let run = 0; run < RUNS; run++) {
        const port = await freePort()
        const vars = envFor(env.db, env.r, { PORT: String(port), LOG_LEVEL: 'info', STATS_PUBLIC: 'true', WORKER_BLOCK_MS: '100' })
        const group = runInGroup(script, vars)
        await waitForReady(`http://127.0.0.1:${port}/readyz`, group)
        // Most runs stop a fully started pipeline; every third one stops it while worker and cron may still be loading.
        const early = run % 3 === 2
        if (script === 'start' && !early) await eventually(async () => group.output().includes('worker started') && group.output().includes('job scheduled'))
        const load = steadyLoad(`http://127.0.0.1:${port}`)
        await eventually(async () => load.accepted.length >= 20)
        process.kill(-group.proc.pid, 'SIGINT') // what the terminal does on Ctrl-C
        const code = await group.stop(null)
        await load.stop()
        codes.push(code)
        accepted.push(...load.accepted)
        const out = group.output()
        // Every binary that had started logs its graceful stop (one still loading was stopped before it started).
        for (const [started, stopped] of script === 'start'
          ? [
              ['api listening', 'api stopped'],
              ['worker started', 'worker stopped'],
              ['job scheduled', 'cron stopped'],
            ]
          : [['api listening', 'api stopped']]) {
          if (!early || out.includes(started!)) expect(out).toContain(stopped!)
        }
        expect(out).not.toContain('exiting now')
      }
      expect(codes).toEqual(Array(RUNS).fill(0))
      expect(accepted.length).toBeGreaterThan(RUNS * 20 - 1)
      expect(await unaccounted(accepted)).toEqual([])
    }, 120_000)
  }

  test('on bun run start while it migrates stops it with exit 0 before api, worker or cron start', async () => {
    const codes: number[] = []
    for (let run = 0; run < 5; run++) {
      const group = runInGroup('start', envFor(env.db, env.r, { PORT: String(await freePort()), LOG_LEVEL: 'info', STATS_PUBLIC: 'true' }))
      // Caught as soon as it exists, migrate is still loading: the Ctrl-C kills it before it holds signals.
      const migrating = await eventually(async () => groupRuns(group.proc.pid, 'cmd/migrate/main.ts'), { intervalMs: 5 })
      if (!migrating) throw new Error(`bun run start never ran migrate (exit ${group.proc.exitCode}):\n${group.output()}`)
      process.kill(-group.proc.pid, 'SIGINT')
      codes.push(await group.stop(null))
      expect(group.output()).not.toContain('api listening')
    }
    expect(codes).toEqual(Array(5).fill(0))
  }, 60_000)
})
