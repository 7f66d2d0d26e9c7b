// bun run bench:ladder [-- --rounds N --seconds S]: where the API's CPU per single event goes.
// Servers that each do one more piece of POST /event's work (bench/ladder-server.ts), and the
// API itself, under the same wrk load in rotated rounds; reports the median CPU per request
// of each and what each step adds. Measures, never asserts.
import { parseArgs } from 'node:util'
import { createTestDatabase, createTestRedis, envFor, freePort, spawnBinary, waitForReady } from '../internal/testkit/testkit.ts'
import { median, runRounds } from './rounds.ts'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '4' }, seconds: { type: 'string', default: '6' } } })
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
  STEPS.map(async (what, step) => {
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
    ...ladder.map((s) => ({ name: s.name, url: `http://127.0.0.1:${s.port}/event`, pids: () => [s.proc.pid], after: emptied(s.stream) })),
    { name: 'api', url: `http://127.0.0.1:${apiPort}/event`, pids: () => [api.proc.pid], after: emptied(r.queue.stream) },
  ],
  { rounds: Number(values.rounds), seconds: Number(values.seconds), script: 'event.lua', env: { TIMESTAMP: new Date().toISOString() } },
)
/** A contender's CPU per request in each round, and their median. */
const cpuOf = (name: string) => {
  const rounds = runs.filter((x) => x.name === name).map((x) => x.cpuUsPerRequest)
  return { median: median(rounds), rounds: rounds.map((x) => x.toFixed(1)).join(', ') }
}
const steal = median(runs.map((x) => x.stealShare))
let previous = Number.NaN
for (const [i, s] of ladder.entries()) {
  const cpu = cpuOf(s.name)
  const added = i ? ` (${cpu.median - previous >= 0 ? '+' : ''}${(cpu.median - previous).toFixed(1)})` : ''
  console.log(`${s.name}: ${cpu.median.toFixed(1)} µs/req${added} [${cpu.rounds}]  ${s.what}`)
  previous = cpu.median
}
const apiCpu = cpuOf('api')
console.log(`api   : ${apiCpu.median.toFixed(1)} µs/req [${apiCpu.rounds}]  the API (bun run api)`)
console.log(`median steal ${(100 * steal).toFixed(1)} %; non-2xx ${runs.reduce((n, x) => n + x.non2xx + x.errors, 0)}`)
for (const s of ladder) s.proc.kill()
await api.stop()
await r.cleanup()
await db.drop()
process.exit(0)
