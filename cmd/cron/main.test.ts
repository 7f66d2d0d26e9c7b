import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createTestDatabase, createTestRedis, envFor, eventually, runBinary, spawnBinary, type TestDatabase, type TestRedis } from '../../internal/testkit/testkit.ts'

let db: TestDatabase
let r: TestRedis
beforeAll(async () => {
  ;[db, r] = await Promise.all([createTestDatabase(), createTestRedis()])
})
afterAll(async () => {
  await r.cleanup()
  await db.drop()
})

describe('sluice-cron', () => {
  test('--once queue-depth logs the depth of the queue and exits 0', async () => {
    await r.redis.xadd(r.queue.stream, '*', 'e', '{}')
    const { code, output } = await runBinary('cron', envFor(db, r, { LOG_LEVEL: 'info' }), ['--once', 'queue-depth'])
    expect(code).toBe(0)
    const line = output.split('\n').map((l) => { try { return JSON.parse(l) } catch { return null } }).find((l) => l?.job === 'queue-depth')
    expect(line).toMatchObject({ msg: 'queue depth', length: 1, pending: 0 })
  })

  test('--once with an unknown job exits 64 naming the known jobs', async () => {
    const { code, output } = await runBinary('cron', envFor(db, r), ['--once', 'nope'])
    expect(code).toBe(64)
    expect(output).toContain('known jobs: rollup, retention, queue-depth')
  })

  test('runs jobs on their schedules until SIGTERM, then exits 0', async () => {
    const cron = spawnBinary('cron', envFor(db, r, { LOG_LEVEL: 'info', CRON_QUEUE_DEPTH: '* * * * * *' }))
    expect(await eventually(async () => cron.output().includes('"msg":"queue depth"'), { timeoutMs: 10_000 })).toBe(true)
    expect(await cron.stop()).toBe(0)
  })

  test('rejects a bad schedule at start with exit 78', async () => {
    const { code, output } = await runBinary('cron', envFor(db, r, { CRON_QUEUE_DEPTH: 'often' }))
    expect(code).toBe(78)
    expect(output).toContain('config: CRON_QUEUE_DEPTH: not a valid cron pattern')
  })
})
