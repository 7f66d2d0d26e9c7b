import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createTestDatabase, createTestRedis, envFor, eventually, freePort, runBinary, spawnBinary, type TestDatabase, type TestRedis } from '../../internal/testkit/testkit.ts'

let db: TestDatabase
let r: TestRedis
beforeAll(async () => {
  ;[db, r] = await Promise.all([createTestDatabase(), createTestRedis()])
})
afterAll(async () => {
  await r.cleanup()
  await db.drop()
})

describe('sluice-worker', () => {
  test('runs until SIGTERM, then exits 0', async () => {
    const worker = spawnBinary('worker', envFor(db, r, { LOG_LEVEL: 'info' }))
    expect(await eventually(async () => worker.output().includes('worker started'))).toBe(true)
    expect(await worker.stop()).toBe(0)
    expect(worker.output()).toContain('worker stopped')
  })

  test('exits 69 with one line saying which Postgres it tried and how to fix it', async () => {
    const dead = `postgres://postgres@127.0.0.1:${await freePort()}/sluice`
    const { code, output } = await runBinary('worker', { ...envFor(db, r), DATABASE_URL: dead })
    expect(code).toBe(69)
    expect(output.trim().split('\n')).toEqual([`sluice-worker: cannot reach Postgres at ${dead} (ECONNREFUSED): start PostgreSQL, or set DATABASE_URL to a reachable database`])
  })
})
