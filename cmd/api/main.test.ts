import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createTestDatabase, createTestRedis, envFor, freePort, runBinary, spawnBinary, waitForReady, type TestDatabase, type TestRedis } from '../../internal/testkit/testkit.ts'

let db: TestDatabase
let r: TestRedis
beforeAll(async () => {
  ;[db, r] = await Promise.all([createTestDatabase(), createTestRedis()])
})
afterAll(async () => {
  await r.cleanup()
  await db.drop()
})

describe('sluice-api', () => {
  test('serves until SIGTERM, then exits 0', async () => {
    const port = await freePort()
    const api = spawnBinary('api', envFor(db, r, { PORT: String(port), STATS_TOKEN: 't' }))
    await waitForReady(`http://127.0.0.1:${port}/readyz`, api)
    expect(await api.stop()).toBe(0)
  })

  test('refuses to start without a stats token, in one line naming the setting', async () => {
    const { code, output } = await runBinary('api', envFor(db, r, { PORT: String(await freePort()), STATS_TOKEN: '', STATS_PUBLIC: 'false' }))
    expect(code).toBe(78)
    expect(output.trim()).toBe('sluice-api: config: STATS_TOKEN: must be set so that stats need a token (or set STATS_PUBLIC=true to serve stats without one)')
  })

  test('exits 69 with one line saying which Redis it tried and how to fix it', async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`
    const { code, output } = await runBinary('api', { ...envFor(db, r, { STATS_TOKEN: 't' }), REDIS_URL: dead })
    expect(code).toBe(69)
    expect(output.trim().split('\n')).toEqual([`sluice-api: cannot reach Redis at ${dead} (ECONNREFUSED): start redis-server, or set REDIS_URL to a reachable server`])
  })
})
