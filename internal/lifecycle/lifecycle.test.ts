import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'

// Signals are the process's own, so each case runs a small process that installs
// onStopSignals, says "ready", and exits 0 a moment after a graceful stop begins.
const script = `
import { onStopSignals } from '${join(import.meta.dir, 'lifecycle.ts')}'
import { silentLogger } from '${join(import.meta.dir, '..', 'log', 'log.ts')}'
const stop = onStopSignals(silentLogger(), { echoMs: 300 })
stop.addEventListener('abort', () => setTimeout(() => process.exit(0), 700))
console.log('ready')
setInterval(() => {}, 1000)
`

async function signalled(gapsMs: number[]): Promise<number> {
  const proc = Bun.spawn(['bun', '-e', script], { stdout: 'pipe', stderr: 'inherit' })
  const reader = proc.stdout.getReader()
  await reader.read() // "ready"
  for (const gap of gapsMs) {
    await Bun.sleep(gap)
    proc.kill('SIGINT')
  }
  return proc.exited
}

describe('stop signals', () => {
  test('the echoes of one Ctrl-C within the window are one graceful stop', async () => {
    expect(await signalled([0, 20, 40])).toBe(0)
  })

  test('a second Ctrl-C after the window exits at once with 130', async () => {
    expect(await signalled([0, 500])).toBe(130)
  })
})
