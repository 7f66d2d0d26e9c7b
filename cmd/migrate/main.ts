// sluice-migrate: creates the database if needed and applies pending migrations.
import { connectPostgres, createSql } from '../../internal/clients/clients.ts'
import { loadConfig } from '../../internal/config/config.ts'
import { runMain } from '../../internal/lifecycle/run.ts'
import { ensureDatabase, migrate } from '../../internal/store/migrate.ts'

await runMain('migrate', async () => {
  const config = loadConfig()
  if (await ensureDatabase(config.databaseUrl).catch(() => false)) console.log('created the database')
  const sql = createSql(config.databaseUrl, { max: 1 })
  await connectPostgres(sql, config.databaseUrl)
  const applied = await migrate(sql)
  console.log(applied.length ? `applied ${applied.join(', ')}` : 'database is up to date')
  await sql.end({ timeout: 5 })
  return 0
})
