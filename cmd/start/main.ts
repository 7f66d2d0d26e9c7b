// sluice-start: runs api, worker and cron together for local use. Stops them all on
// SIGINT/SIGTERM, or when any one of them exits.
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { scriptCommand } from '../../internal/lifecycle/run.ts'

const root = join(import.meta.dir, '..', '..')
const env = { ...process.env }
if (!env.STATS_TOKEN && env.STATS_PUBLIC !== 'true') {
  env.STATS_TOKEN = randomBytes(18).toString('base64url')
  console.error(`sluice-start: STATS_TOKEN was not set; this run's stats token is ${env.STATS_TOKEN}`)
}

// Each binary is started exactly as its package.json script starts it.
const migrate = Bun.spawnSync(scriptCommand(root, 'migrate'), { cwd: root, env, stdout: 'inherit', stderr: 'inherit' })
if (migrate.exitCode !== 0) process.exit(migrate.exitCode ?? 1)

const children = ['api', 'worker', 'cron'].map((name) => ({
  name,
  proc: Bun.spawn(scriptCommand(root, name), { cwd: root, env, stdout: 'inherit', stderr: 'inherit' }),
}))

let stopping = false
function stopAll(signal: NodeJS.Signals) {
  if (stopping) {
    for (const { proc } of children) proc.kill('SIGKILL')
    return
  }
  stopping = true
  for (const { proc } of children) proc.kill(signal)
}
process.on('SIGINT', () => stopAll('SIGTERM'))
process.on('SIGTERM', () => stopAll('SIGTERM'))

const first = await Promise.race(children.map(async ({ name, proc }) => ({ name, code: await proc.exited })))
// Signal the others only if no stop is under way: a second SIGTERM makes a binary exit at once.
if (!stopping) {
  console.error(`sluice-start: ${first.name} exited with ${first.code}; stopping the others`)
  stopAll('SIGTERM')
}
const codes = await Promise.all(children.map(({ proc }) => proc.exited))
process.exit(stopping && codes.every((c) => c === 0) ? 0 : first.code || 1)
