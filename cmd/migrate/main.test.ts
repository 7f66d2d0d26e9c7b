import { afterAll, describe, expect, test } from 'bun:test'
import postgres from 'postgres'
import { loadConfig } from '../../internal/config/config.ts'
import { listMigrations, MIGRATION_LOCK } from '../../internal/store/migrate.ts'
import { eventually, runBinary, spawnBinary, uniqueName } from '../../internal/testkit/testkit.ts'

const name = uniqueName('sluice_migrate')
const raced = uniqueName('sluice_migrate_race')
const bare = uniqueName('sluice_migrate_bare')
const url = (db: string) => {
  const u = new URL(loadConfig({ ...process.env, STATS_PUBLIC: 'true' }).databaseUrl)
  u.pathname = `/${db}`
  return u.toString()
}
const env = { ...(process.env as Record<string, string>), DATABASE_URL: url(name) }

afterAll(async () => {
  const admin = postgres(url('postgres'), { max: 1, onnotice: () => {} })
  for (const db of [name, raced, bare]) await admin`drop database if exists ${admin(db)} with (force)`
  await admin.end()
})

describe('sluice-migrate', () => {
  test('creates a missing database and applies the migrations; a second run changes nothing', async () => {
    const first = await runBinary('migrate', env)
    expect(first).toEqual({ code: 0, output: expect.stringMatching(/created the database\napplied 0001_events.sql/) })
    const second = await runBinary('migrate', env)
    expect(second).toEqual({ code: 0, output: 'database is up to date\n' })
  })

  test('several runs started at once on a missing database all succeed, and apply each migration once', async () => {
    const runs = await Promise.all([1, 2, 3].map(() => runBinary('migrate', { ...env, DATABASE_URL: url(raced) })))
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0])
    expect(runs.filter((r) => r.output.includes('applied 0001_events.sql'))).toHaveLength(1)
    const sql = postgres(url(raced), { max: 1, onnotice: () => {} })
    const versions = await sql`select version from schema_migrations order by version`
    await sql.end()
    expect(versions.map((v) => v.version)).toEqual((await listMigrations()).map((m) => m.version))
  })

  test('a binary started on a database that lacks migrations changes nothing and exits 69, naming the fix', async () => {
    const admin = postgres(url('postgres'), { max: 1, onnotice: () => {} })
    await admin`create database ${admin(bare)}`
    await admin.end()
    const api = await runBinary('api', { ...env, DATABASE_URL: url(bare), STATS_PUBLIC: 'true', PORT: '0' })
    expect(api.code).toBe(69)
    expect(api.output).toContain('lacks migrations 0001_events.sql')
    expect(api.output).toContain('run `bun run migrate` first')
    const sql = postgres(url(bare), { max: 1, onnotice: () => {} })
    const tables = await sql`select count(*)::int as n from pg_tables where schemaname = 'public'`
    await sql.end()
    expect(tables[0]!.n).toBe(0)
  })

  test('a stop signal ends a migration that waits on the lock at once, with 143, and it applies nothing', async () => {
    const locked = uniqueName('sluice_migrate_locked')
    const admin = postgres(url('postgres'), { max: 1, onnotice: () => {} })
    await admin`create database ${admin(locked)}`
    const holder = postgres(url(locked), { max: 1, onnotice: () => {} })
    try {
      let stopped = false
      // Another migration holds the lock (a transaction that never ends, here).
      const release = holder.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`
        await eventually(async () => stopped, { timeoutMs: 30_000 })
      })
      const migrate = spawnBinary('migrate', { ...env, DATABASE_URL: url(locked) })
      const waiting = await eventually(
        async () => (await admin`select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted`)[0]!.n === 1,
      )
      expect(waiting).toBe(true)
      const code = await Promise.race([migrate.stop('SIGTERM'), Bun.sleep(5000).then(() => 'still running')])
      stopped = true
      await release
      expect(code).toBe(143)
      expect(migrate.output()).toContain('stopped by SIGTERM')
      const applied = await holder`select count(*)::int as n from pg_tables where tablename = 'schema_migrations'`
      expect(applied[0]!.n).toBe(0)
    } finally {
      await holder.end()
      await admin`drop database if exists ${admin(locked)} with (force)`
      await admin.end()
    }
  }, 30_000)
})
