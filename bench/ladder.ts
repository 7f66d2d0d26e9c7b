// bun run bench:ladder [-- --rounds N --seconds S] [-- --floor]: where the API's CPU per single event goes.
// Servers that each do one more piece of POST /event's work (bench/ladder-server.ts), and the
// API itself, under the same wrk load in rotated rounds; reports the median CPU per request
// of each and what each step adds. Beside them run the floor (the bare server answering only
// once a 0 ms timer has fired, or once Redis holds the body) and the naive server of
// bun run bench: how far the goals are from what merely waiting for Redis costs.
// Measures, never asserts.
import { parseArgs } from 'node:util'
import { createTestDatabase, createTestRedis, envFor, freePort, spawnBinary, waitForReady } from '../internal/testkit/testkit.ts'
import { median, ratios, type Run, runRounds } from './rounds.ts'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '6' },
    // Only bare (step 0), the floor, naive and the API: the goals against the floor, in rounds close together.
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
    // Step 0 is the bare server bench/bench.ts compares with.
    const command =
      step === 0 ? [`${import.meta.dir}/baseline.ts`, String(port)] : [`${import.meta.dir}/ladder-server.ts`, String(port), String(step), r.url, stream]
    const proc = Bun.spawn(['bun', '--smol', ...command], {
      stdout: 'ignore',
      stderr: 'inherit',
    })
    return { name: `step ${step}`, what, port, stream, proc }
  }),
)
/** The bare server with only the wait for Redis, and the naive server, for reference. */
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
    const proc = Bun.spawn(['bun', '--smol', ...command], { stdout: 'ignore', stderr: 'inherit' })
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
/** A contender's CPU per request in each round, and their median. */
const cpuOf = (name: string) => {
  const rounds = runs.filter((x) => x.name === name).map((x) => x.cpuUsPerRequest)
  return { median: median(rounds), rounds: rounds.map((x) => x.toFixed(1)).join(', ') }
}
/** A contender's median requests per second over the rounds. */
const rpsOf = (name: string) => median(runs.filter((x) => x.name === name).map((x) => x.rps))
/** A contender's median p99 latency over the rounds. */
const p99Of = (name: string) => median(runs.filter((x) => x.name === name).map((x) => x.p99Ms))
const steal = median(runs.map((x) => x.stealShare))
let previous = Number.NaN
for (const [i, s] of ladder.entries()) {
  const cpu = cpuOf(s.name)
  const added = i ? ` (${cpu.median - previous >= 0 ? '+' : ''}${(cpu.median - previous).toFixed(1)})` : ''
  console.log(`${s.name}: ${cpu.median.toFixed(1)} µs/req${added} [${cpu.rounds}]  ${s.what}`)
  previous = cpu.median
}
const apiCpu = cpuOf('api')
console.log(
  `api   : ${apiCpu.median.toFixed(1)} µs/req [${apiCpu.rounds}], ${Math.round(rpsOf('api'))} req/s, p99 ${p99Of('api').toFixed(2)} ms  the API (bun run api)`,
)
for (const s of references) {
  const cpu = cpuOf(s.name)
  console.log(`${s.name}: ${cpu.median.toFixed(1)} µs/req [${cpu.rounds}], ${Math.round(rpsOf(s.name))} req/s, p99 ${p99Of(s.name).toFixed(2)} ms  ${s.what}`)
}
// The goals for the API beside what the floor alone reaches: ratios within each round, then their median.
const perRound = (a: string, b: string, figure: (x: Run) => number) => {
  const xs = ratios(runs, a, b, figure)
  return `${median(xs).toFixed(2)}× [${xs.map((x) => x.toFixed(2)).join(', ')}]`
}
for (const name of ['floor-timer', 'floor-redis', 'api']) {
  console.log(
    `${name}: CPU ${perRound(name, 'step 0', (x) => x.cpuUsPerRequest)} bare's (goal ≤ 1.5); req/s ${perRound(name, 'step 0', (x) => x.rps)} bare's (goal ≥ 0.7), ${perRound(name, 'naive', (x) => x.rps)} naive's (goal ≥ 1.5)`,
  )
}
console.log(`median steal ${(100 * steal).toFixed(1)} %; non-2xx ${runs.reduce((n, x) => n + x.non2xx + x.errors, 0)}`)
for (const s of [...ladder, ...references]) s.proc.kill()
await api.stop()
await r.cleanup()
await db.drop()
process.exit(0)
