// bun run bench:ladder [-- [--rounds N] [--seconds S] [--floor]]: where the API's CPU per single event goes.
// Servers that each do one more piece of POST /event's work (bench/ladder-server.ts), and the
// API itself, under the same wrk load in rotated rounds; reports the median CPU per request
// of each and what each step adds. Beside them run two floors (the bare server answering only
// once a 0 ms timer has fired, or only once Redis holds the body) and the naive server of
// bun run bench: how far the goals are from what merely waiting for Redis costs.
// Every server but the API runs as bun run bench runs its baselines (plain `bun`); the API
// as `bun run api` runs it. Measures, never asserts.
import { parseArgs } from 'node:util'
import { createTestDatabase, createTestRedis, envFor, freePort, spawnBinary, waitForReady } from '../internal/testkit/testkit.ts'
import { median, ratios, type Run, runRounds } from './rounds.ts'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '6' },
    // Only bare (step 0), the floors, naive and the API: the goals against the floor, in rounds close together.
    floor: { type: 'boolean', default: false },
  },
})
const STEPS = [
  'bare: await req.json(), answer 202',
  '+ the body checks, req.bytes() and parseJson, the 202 naming the event_id',
  '+ the body deadline',
  "+ the client's address (server.requestIP)",
  '+ the event schema (valibot)',
  '+ enrichment (user agent, country, source)',
  '+ a coalescing writer answered in the same event-loop turn (no Redis)',
  '+ a coalescing writer answered after a 0 ms timer (no Redis)',
  '+ the real writer: XADD to Redis, answered when Redis has it',
]

const db = await createTestDatabase()
const r = await createTestRedis()
const ladder = await Promise.all(
  (values.floor ? STEPS.slice(0, 1) : STEPS).map(async (what, step) => {
    const port = await freePort()
    const stream = `${r.queue.stream}:ladder${step}`
    // Step 0 is the bare server bench/bench.ts compares with, started as it starts it.
    const command =
      step === 0 ? [`${import.meta.dir}/baseline.ts`, String(port)] : [`${import.meta.dir}/ladder-server.ts`, String(port), String(step), r.url, stream]
    const proc = Bun.spawn(['bun', ...command], { stdout: 'ignore', stderr: 'inherit' })
    return { name: `step ${step}`, what, port, stream, proc }
  }),
)
/** The floors (the bare server with only a wait before its 202) and the naive server, for reference. */
const references = await Promise.all(
  (
    [
      ['floor-timer', 'the floor: bare, answered after a 0 ms timer (no Redis)'],
      ['floor-redis', 'the floor: bare, answered once Redis holds the body (the real writer, no other work)'],
      ['naive', 'the naive server of bun run bench (Hono, valibot, one awaited XADD per request)'],
    ] as const
  ).map(async ([name, what]) => {
    const port = await freePort()
    const stream = `${r.queue.stream}:${name}`
    const command =
      name === 'naive'
        ? [`${import.meta.dir}/naive.ts`, String(port), r.url, stream]
        : [`${import.meta.dir}/ladder-server.ts`, String(port), name, r.url, stream]
    const proc = Bun.spawn(['bun', ...command], { stdout: 'ignore', stderr: 'inherit' })
    return { name, what, port, stream, proc }
  }),
)
const apiPort = await freePort()
const api = spawnBinary('api', envFor(db, r, { PORT: String(apiPort), STATS_TOKEN: 'bench', QUEUE_MAX_BACKLOG: '100000000', LOG_LEVEL: 'warn' }))
await waitForReady(`http://127.0.0.1:${apiPort}/readyz`, api)
await Bun.sleep(500)
const emptied = (stream: string) => async () => {
  await Bun.sleep(300)
  await r.redis.del(stream)
}
const runs = await runRounds(
  [
    ...[...ladder, ...references].map((s) => ({ name: s.name, url: `http://127.0.0.1:${s.port}/event`, pids: () => [s.proc.pid], after: emptied(s.stream) })),
    { name: 'api', url: `http://127.0.0.1:${apiPort}/event`, pids: () => [api.proc.pid], after: emptied(r.queue.stream) },
  ],
  { rounds: Number(values.rounds), seconds: Number(values.seconds), script: 'event.lua', env: { TIMESTAMP: new Date().toISOString() } },
)
/** A figure of a contender's runs, round by round, and its median. */
const of = (name: string, figure: (x: Run) => number) => {
  const rounds = runs.filter((x) => x.name === name).map(figure)
  return { median: median(rounds), rounds: rounds.map((x) => x.toFixed(1)).join(', ') }
}
const cpuOf = (name: string) => of(name, (x) => x.cpuUsPerRequest)
/** The median requests/s and p99 of a contender. */
const rateOf = (name: string) => `${Math.round(of(name, (x) => x.rps).median)} req/s, p99 ${of(name, (x) => x.p99Ms).median.toFixed(2)} ms`
const steal = median(runs.map((x) => x.stealShare))
let previous = Number.NaN
for (const [i, s] of ladder.entries()) {
  const cpu = cpuOf(s.name)
  const added = i ? ` (${cpu.median - previous >= 0 ? '+' : ''}${(cpu.median - previous).toFixed(1)})` : ''
  console.log(`${s.name}: ${cpu.median.toFixed(1)} µs/req${added} [${cpu.rounds}]  ${s.what}`)
  previous = cpu.median
}
console.log(`bare  : ${rateOf('step 0')}`)
const apiCpu = cpuOf('api')
console.log(`api   : ${apiCpu.median.toFixed(1)} µs/req [${apiCpu.rounds}], ${rateOf('api')}  the API (bun run api)`)
for (const s of references) {
  const cpu = cpuOf(s.name)
  console.log(`${s.name}: ${cpu.median.toFixed(1)} µs/req [${cpu.rounds}], ${rateOf(s.name)}  ${s.what}`)
}
// The goals for the API beside what the floor alone reaches: ratios within each round, then their median.
const perRound = (a: string, b: string, figure: (x: Run) => number) => {
  const xs = ratios(runs, a, b, figure)
  return `${median(xs).toFixed(2)}× [${xs.map((x) => x.toFixed(2)).join(', ')}]`
}
const cpuRatio = (name: string) => `CPU ${perRound(name, 'step 0', (x) => x.cpuUsPerRequest)} bare's (goal ≤ 1.5)`
// A 0 ms timer waits at least 1 ms, so at 50 connections it, not the CPU, sets the timer floor's rate: only its CPU tells.
console.log(`floor-timer: ${cpuRatio('floor-timer')}`)
for (const name of ['floor-redis', 'api']) {
  console.log(
    `${name}: ${cpuRatio(name)}; req/s ${perRound(name, 'step 0', (x) => x.rps)} bare's (goal ≥ 0.7), ${perRound(name, 'naive', (x) => x.rps)} naive's (goal ≥ 1.5)`,
  )
}
console.log(`median steal ${(100 * steal).toFixed(1)} %; non-2xx ${runs.reduce((n, x) => n + x.non2xx + x.errors, 0)}`)
for (const s of [...ladder, ...references]) s.proc.kill()
await api.stop()
await r.cleanup()
await db.drop()
process.exit(0)
