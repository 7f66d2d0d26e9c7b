import { describe, expect, test } from 'bun:test'
import { envFor, eventually, runBinary, spawnBinary, isolated } from '../../internal/testkit/testkit.ts'

const env = isolated()

describe('sluice-cron', () => {
  test('--once queue-depth logs the depth of the queue and exits 0', async () => {
    await env.r.redis.xadd(env.r.queue.stream, '*', 'e', '{}')
    const { code, output } = await runBinary('cron', envFor(env.db, env.r, { LOG_LEVEL: 'info' }), ['--once', 'queue-depth'])
    expect(code).toBe(0)
    const line = output
      .split('\n')
      .map((l) => {
        try {
          return JSON.parse(l)
        } catch {
          return null
        }
      })
      .find((l) => l?.job === 'queue-depth')
    expect(line).toMatchObject({ msg: 'queue depth', length: 1, pending: 0 })
  })

  test('--once with an unknown job exits 64 naming the known jobs', async () => {
    const { code, output } = await runBinary('cron', envFor(env.db, env.r), ['--once', 'nope'])
    expect(code).toBe(64)
    expect(output).toContain('known jobs: rollup, retention, queue-depth')
  })

  test('runs jobs on their schedules until SIGTERM, then exits 0', async () => {
    const cron = spawnBinary('cron', envFor(env.db, env.r, { LOG_LEVEL: 'info', CRON_QUEUE_DEPTH: '* * * * * *' }))
    expect(await eventually(async () => cron.output().includes('"msg":"queue depth"'), { timeoutMs: 10_000 })).toBe(true)
    expect(await cron.stop()).toBe(0)
  })

  test('rejects a bad schedule at start with exit 78', async () => {
    const { code, output } = await runBinary('cron', envFor(env.db, env.r, { CRON_QUEUE_DEPTH: 'often' }))
    expect(code).toBe(78)
    expect(output).toContain('config: CRON_QUEUE_DEPTH: not a valid cron pattern')
  })
})
