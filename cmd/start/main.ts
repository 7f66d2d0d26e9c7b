// sluice-start: runs api, worker and cron together for local use. Stops them all on
// SIGINT/SIGTERM, or when any one of them exits.
import { join } from 'node:path'
import { ConfigError, localStatsToken } from '../../internal/config/config.ts'
import { EXIT } from '../../internal/lifecycle/exit-codes.ts'
import { SIGNAL_ECHO_MS } from '../../internal/lifecycle/lifecycle.ts'
import { scriptCommand } from '../../internal/lifecycle/scripts.ts'

const root = join(import.meta.dir, '..', '..')
const env = { ...process.env }
let token: string | null = null
try {
  token = localStatsToken(env)
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  console.error(`sluice-start: ${err.message}`)
  process.exit(EXIT.config)
}
if (token) {
  env.STATS_TOKEN = token
  console.error(`sluice-start: STATS_TOKEN was not set; this run's stats token is ${token}`)
}

// The first signal stops every child gracefully (once: a second SIGTERM would make them exit
// at once). The echoes of the same Ctrl-C are ignored; a signal after that kills them.
// Installed before anything starts, so a Ctrl-C during start-up is a stop too.
let children: { name: string; proc: Bun.Subprocess }[] = []
let stopping = false
let stoppedAt = 0
function stopAll() {
  if (stopping) {
    if (Date.now() - stoppedAt < SIGNAL_ECHO_MS) return
    console.error('sluice-start: second stop signal: killing api, worker and cron')
    for (const { proc } of children) proc.kill('SIGKILL')
    return
  }
  stopping = true
  stoppedAt = Date.now()
  for (const { proc } of children) proc.kill('SIGTERM')
}
process.on('SIGINT', stopAll)
process.on('SIGTERM', stopAll)

// Each binary is started exactly as its package.json script starts it.
const spawn = (name: string) => Bun.spawn(scriptCommand(root, name), { cwd: root, env, stdout: 'inherit', stderr: 'inherit' })
// A process that a stop signal killed outright had not got as far as holding signals (runMain's
// first step): it never started, so it held nothing. That is a clean stop too.
const stoppedCleanly = (proc: Bun.Subprocess) => proc.exitCode === 0 || proc.signalCode === 'SIGINT' || proc.signalCode === 'SIGTERM'

// Awaited, not run synchronously, so the handlers above see a Ctrl-C during migrate, and
// pass a stop on to it: it exits at once (130 or 143), rolling back what it had not
// committed. Stopped by a signal, migrate was stopped too (that Ctrl-C may reach this
// process a moment later).
const migrate = spawn('migrate')
children = [{ name: 'migrate', proc: migrate }]
await migrate.exited
const migrateStopped =
  migrate.signalCode === 'SIGINT' || migrate.signalCode === 'SIGTERM' || migrate.exitCode === EXIT.interrupted || migrate.exitCode === EXIT.terminated
if ((stopping || migrateStopped) && (migrate.exitCode === 0 || migrateStopped)) process.exit(EXIT.ok)
if (migrate.exitCode !== 0) process.exit(migrate.exitCode ?? EXIT.failed)

children = ['api', 'worker', 'cron'].map((name) => ({ name, proc: spawn(name) }))

const first = await Promise.race(children.map(async ({ name, proc }) => ({ name, code: await proc.exited })))
// Signal the others only if no stop is under way: a second SIGTERM makes a binary exit at once.
if (!stopping) {
  console.error(`sluice-start: ${first.name} exited with ${first.code}; stopping the others`)
  stopAll()
}
await Promise.all(children.map(({ proc }) => proc.exited))
process.exit(stopping && children.every(({ proc }) => stoppedCleanly(proc)) ? EXIT.ok : first.code || EXIT.failed)
