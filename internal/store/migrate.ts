import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import postgres from 'postgres'
import { connectPostgres, createSql, redact, UnreachableError, type Sql, withTimeout } from '../clients/clients.ts'
import { ensurePartitions } from './retention.ts'

export const MIGRATIONS_DIR = join(import.meta.dir, 'migrations')
// Any constant works; it only has to be the same in every process that migrates.
export const MIGRATION_LOCK = 7_283_410_001

export type Migration = { version: number; name: string; path: string }

export async function listMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort()
  return files.map((name) => {
    const version = Number.parseInt(name, 10)
    if (!Number.isInteger(version)) throw new Error(`migrate: ${name}: file names must start with a version number`)
    return { version, name, path: join(dir, name) }
  })
}

/**
 * Applies every migration not yet recorded in schema_migrations, each in the same
 * transaction as its record, under an advisory lock so concurrent starts take turns.
 * Returns the names it applied; running it again applies nothing.
 */
export async function migrate(sql: Sql, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = await listMigrations(dir)
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`
    await tx`create table if not exists schema_migrations (
      version int primary key,
      name text not null,
      applied_at timestamptz not null default now()
    )`
    const done = new Set((await tx`select version from schema_migrations`).map((r) => r.version as number))
    const applied: string[] = []
    for (const m of migrations) {
      if (done.has(m.version)) continue
      await tx.file(m.path).simple()
      await tx`insert into schema_migrations (version, name) values (${m.version}, ${m.name})`
      applied.push(m.name)
    }
    return applied
  })
}

/** Creates the database named in `url` when it does not exist yet, by way of the `postgres` database. */
export async function ensureDatabase(url: string): Promise<boolean> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1))
  if (!name) return false
  const admin = new URL(url)
  admin.pathname = '/postgres'
  const sql = postgres(admin.toString(), { max: 1, onnotice: () => {}, connect_timeout: 5 })
  try {
    // Bounded, as connectPostgres is: a server that is not Postgres would keep it reconnecting.
    const [exists] = await withTimeout(sql`select 1 from pg_database where datname = ${name}`.execute(), 10_000)
    if (exists) return false
    await sql`create database ${sql(name)}`
    return true
  } catch (err) {
    // Another process created it first.
    if ((err as { code?: string }).code === '42P04') return false
    throw err
  } finally {
    await sql.end({ timeout: 1 })
  }
}

export type Prepared = { createdDatabase: boolean; applied: string[]; partitionsCreated: number }

/**
 * Everything a database needs before the binaries use it: the database itself, every
 * migration, and the hourly partitions of events around now. `bun run migrate` (and so
 * `bun run start` and compose's one-shot migrate service) runs it; the other binaries only
 * check that it has been run (requireSchema). Safe to run again, and from several places
 * at once: migrations take turns under an advisory lock.
 */
export async function prepareDatabase(url: string): Promise<Prepared> {
  // Creating the database needs the maintenance database; a managed Postgres may refuse, and
  // then connectPostgres reports the real problem.
  const createdDatabase = await ensureDatabase(url).catch(() => false)
  const sql = createSql(url, { max: 1 })
  await connectPostgres(sql, url)
  try {
    const applied = await migrate(sql)
    const partitionsCreated = await ensurePartitions(sql)
    return { createdDatabase, applied, partitionsCreated }
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/**
 * Throws UnreachableError, naming the fix, when the database lacks migrations this build
 * has: binaries never change the schema themselves. A newer schema (a newer build migrated
 * first, during a rolling upgrade) is fine.
 */
export async function requireSchema(sql: Sql, url: string, dir = MIGRATIONS_DIR): Promise<void> {
  const migrations = await listMigrations(dir)
  const needed = migrations.at(-1)?.version ?? 0
  const [row] = await sql`select coalesce(max(version), 0)::int as version from schema_migrations`.catch((err: { code?: string }) =>
    err.code === '42P01' ? [{ version: 0 }] : Promise.reject(err),
  )
  const have = row!.version as number
  if (have < needed) {
    const missing = migrations.filter((m) => m.version > have).map((m) => m.name)
    throw new UnreachableError(`the database at ${redact(url)} lacks migrations ${missing.join(', ')}: run \`bun run migrate\` first`)
  }
}
