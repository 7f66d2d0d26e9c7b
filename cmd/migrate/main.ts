// sluice-migrate: prepares the database: creates it if needed, applies pending migrations
// and makes the hourly partitions around now. The other binaries only check it was run.
import { loadConfig } from '../../internal/config/config.ts'
import { runMain } from '../../internal/lifecycle/run.ts'
import { prepareDatabase } from '../../internal/store/migrate.ts'

await runMain(
  'migrate',
  async () => {
    const config = loadConfig()
    const { createdDatabase, applied } = await prepareDatabase(config.databaseUrl)
    if (createdDatabase) console.log('created the database')
    console.log(applied.length ? `applied ${applied.join(', ')}` : 'database is up to date')
    return 0
  },
  { oneShot: true },
)
