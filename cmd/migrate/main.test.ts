import { afterAll, describe, expect, test } from 'bun:test'
import postgres from 'postgres'
import { loadConfig } from '../../internal/config/config.ts'
import { runBinary, uniqueName } from '../../internal/testkit/testkit.ts'

const name = uniqueName('sluice_migrate')
const url = (db: string) => {
  const u = new URL(loadConfig({ ...process.env, STATS_PUBLIC: 'true' }).databaseUrl)
  u.pathname = `/${db}`
  return u.toString()
}
const env = { ...(process.env as Record<string, string>), DATABASE_URL: url(name) }

afterAll(async () => {
  const admin = postgres(url('postgres'), { max: 1, onnotice: () => {} })
  await admin`drop database if exists ${admin(name)} with (force)`
  await admin.end()
})

describe('sluice-migrate', () => {
  test('creates a missing database and applies the migrations; a second run changes nothing', async () => {
    const first = await runBinary('migrate', env)
    expect(first).toEqual({ code: 0, output: expect.stringMatching(/created the database\napplied 0001_events.sql/) })
    const second = await runBinary('migrate', env)
    expect(second).toEqual({ code: 0, output: 'database is up to date\n' })
  })
})
