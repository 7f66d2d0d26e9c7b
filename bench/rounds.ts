// Compares servers under the same wrk load in rounds, each round in a rotated order
// (A B C, B C A, C A B), so a change in the shared host's speed hits every server alike.
// Reports each run's rate, latency and CPU time per request from /proc.
import { cpuSince } from './proc.ts'
import { wrk, type WrkResult } from './wrk.ts'

export type Contender = {
  name: string
  url: string
  /** The server's own processes, whose CPU is charged to it. */
  pids: () => number[]
  /** Shared processes (Redis) whose CPU during the run is reported apart. */
  shared?: Record<string, number>
  /** Called before each run, e.g. to start extra processes. */
  before?: () => Promise<void>
  /** Called after each run, e.g. to empty the stream the server filled. */
  after?: () => Promise<void>
  /** The wrk script for this contender, when not the rounds' own. */
  script?: string
  /** Environment for this contender's wrk script, on top of the rounds' own. */
  env?: Record<string, string>
  /** How many events one request carries (1 for POST /event). */
  eventsPerRequest?: number
}

export type Run = WrkResult & { round: number; name: string; cpuUsPerRequest: number; sharedUsPerRequest: Record<string, number>; stealShare: number }

export type RoundsOptions = {
  rounds: number
  seconds: number
  script: string
  connections?: number
  threads?: number
  env?: Record<string, string>
  /** Each contender first runs this long unrecorded, so the JIT has warmed up before round 1. */
  warmupSeconds?: number
}

export async function runRounds(
  contenders: Contender[],
  { rounds, seconds, script, connections = 50, threads = 1, env = {}, warmupSeconds = 2 }: RoundsOptions,
): Promise<Run[]> {
  const runs: Run[] = []
  for (const c of contenders) {
    await c.before?.()
    await wrk(c.url, { script: c.script ?? script, seconds: warmupSeconds, connections, threads, env: { ...env, ...c.env, RUN_ID: randomHex8() } })
    await c.after?.()
  }
  for (let round = 0; round < rounds; round++) {
    const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]!)
    for (const c of order) {
      await c.before?.()
      const pids = Object.fromEntries(c.pids().map((pid, i) => [`server${i}`, pid]))
      const measure = cpuSince({ ...pids, ...c.shared })
      const result = await wrk(c.url, { script: c.script ?? script, seconds, connections, threads, env: { ...env, ...c.env, RUN_ID: randomHex8() } })
      const { used, stealShare } = measure()
      const served = Math.max(1, result.requests)
      const serverUs = Object.keys(pids).reduce((s, k) => s + used[k]!, 0)
      runs.push({
        ...result,
        round: round + 1,
        name: c.name,
        stealShare,
        cpuUsPerRequest: serverUs / served,
        sharedUsPerRequest: Object.fromEntries(Object.keys(c.shared ?? {}).map((k) => [k, used[k]! / served])),
      })
      await c.after?.()
    }
  }
  return runs
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/** For each round, a over b in that round, for a figure of the runs. */
export function ratios(runs: Run[], a: string, b: string, figure: (r: Run) => number): number[] {
  const byRound = new Map<number, Record<string, Run>>()
  for (const r of runs) byRound.set(r.round, { ...byRound.get(r.round), [r.name]: r })
  return [...byRound.values()].filter((m) => m[a] && m[b]).map((m) => figure(m[a]!) / figure(m[b]!))
}

const randomHex8 = () =>
  Math.floor(Math.random() * 0xffffffff)
    .toString(16)
    .padStart(8, '0')
