import { describe, expect, test } from 'bun:test'
import { envFor, eventually, freePort, runBinary, spawnBinary, isolated } from '../../internal/testkit/testkit.ts'

const env = isolated()

describe('sluice-worker', () => {
  test('runs until SIGTERM, then exits 0', async () => {
    const worker = spawnBinary('worker', envFor(env.db, env.r, { LOG_LEVEL: 'info' }))
    expect(await eventually(async () => worker.output().includes('worker started'))).toBe(true)
    expect(await worker.stop()).toBe(0)
    expect(worker.output()).toContain('worker stopped')
  })

  test('exits 69 with one line saying which Postgres it tried and how to fix it', async () => {
    const dead = `postgres://postgres@127.0.0.1:${await freePort()}/sluice`
    const { code, output } = await runBinary('worker', { ...envFor(env.db, env.r), DATABASE_URL: dead })
    expect(code).toBe(69)
    expect(output.trim().split('\n')).toEqual([
      `sluice-worker: cannot reach Postgres at ${dead} (ECONNREFUSED): start PostgreSQL, or set DATABASE_URL to a reachable database`,
    ])
  })
})
