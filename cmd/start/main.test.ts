import { describe, expect, test } from 'bun:test'
import { envFor, eventually, freePort, isolated, spawnBinary, waitForReady } from '../../internal/testkit/testkit.ts'

const env = isolated()

describe('sluice-start', () => {
  test('runs api, worker and cron together, and stops them all with exit 0 on one SIGTERM', async () => {
    const port = await freePort()
    const start = spawnBinary('start', envFor(env.db, env.r, { PORT: String(port), STATS_TOKEN: 't', LOG_LEVEL: 'info' }))
    await waitForReady(`http://127.0.0.1:${port}/readyz`, start, 30_000)
    // All three running, so each has a graceful stop to log.
    await eventually(async () => start.output().includes('worker started') && start.output().includes('job scheduled'), { timeoutMs: 30_000 })
    expect(await start.stop()).toBe(0)
    const output = start.output()
    expect(output).toContain('"msg":"api stopped"')
    expect(output).toContain('"msg":"worker stopped"')
    expect(output).toContain('"msg":"cron stopped"')
    expect(output).not.toContain('second stop signal')
  }, 60_000)
})
