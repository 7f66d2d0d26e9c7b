// sluice: the operator command. `bun run sluice -- help` lists what it does.
import { parseArgs } from 'node:util'
import { openClients } from '../../internal/clients/open.ts'
import { loadConfig } from '../../internal/config/config.ts'
import { EXIT } from '../../internal/lifecycle/exit-codes.ts'
import { runMain } from '../../internal/lifecycle/run.ts'
import { createJobs } from '../../internal/cron/cron.ts'
import { createLogger } from '../../internal/log/log.ts'
import { createShardedQueue } from '../../internal/queue/shards.ts'
import { runSitesCommand, SITES_COMMANDS, SITES_OPTIONS, SITES_USAGE } from '../../internal/sites/commands.ts'
import { SitesError } from '../../internal/sites/errors.ts'
import { createSites } from '../../internal/sites/sites.ts'
import { createStore } from '../../internal/store/store.ts'

const USAGE = `usage: bun run sluice -- <command>
  queue                       queue depth: stream length, pending, undelivered, oldest pending age, dead letters
  dead-letters [--count N]    list dead letters, oldest first (default 100)
  replay (--all | <id>...)    put dead letters back on the stream for the workers
  rollup                      run the rollup job once
  rollup-status               how far the rollups are behind (and each shard), and how many events are set aside
  rollup-rejects [--count N]  list raw events the rollup set aside, with Postgres's error (default 100)
  rollup-replay (--all | <event_id>...)
                              put set-aside events back into the raw events for the next rollup
  retention                   run the retention job once
${SITES_USAGE}
Output is JSON.`

/** The ids the replay commands take, and what a wrong one is told. */
const IDS = {
  replay: { pattern: /^\d+-\d+$/, what: "a dead letter's id looks like 1733222400000-0 (from `dead-letters`)" },
  'rollup-replay': {
    pattern: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i,
    what: "a set-aside event's id is its event_id, a UUID (from `rollup-rejects`)",
  },
}

/** What a command that failed with a SitesError (already printed) hands back. */
const FAILED = Symbol('failed')

await runMain(
  'sluice',
  async () => {
    const { positionals, values } = parseArgs({
      allowPositionals: true,
      options: { all: { type: 'boolean' }, count: { type: 'string', default: '100' }, help: { type: 'boolean', short: 'h' }, ...SITES_OPTIONS },
    })
    const [command, ...rest] = positionals
    // Asked for: the usage on standard output, and success.
    if (values.help || command === 'help') {
      console.log(USAGE)
      return EXIT.ok
    }
    const known = ['queue', 'dead-letters', 'replay', 'rollup', 'rollup-status', 'rollup-rejects', 'rollup-replay', 'retention', ...SITES_COMMANDS]
    const needsIds = (command === 'replay' || command === 'rollup-replay') && !values.all && rest.length === 0
    if (!command || !known.includes(command) || needsIds) {
      console.error(USAGE)
      return EXIT.usage
    }
    // Arguments Redis or Postgres would refuse with an error of their own: refused here, by name.
    const ids = IDS[command as keyof typeof IDS]
    const badId = ids && rest.find((id) => !ids.pattern.test(id))
    const wrong = !/^[1-9]\d{0,5}$/.test(String(values.count))
      ? `--count must be a whole number from 1 to 999999, not ${JSON.stringify(values.count)}`
      : badId !== undefined && badId !== ''
        ? `${ids!.what}, not ${JSON.stringify(badId)}`
        : null
    if (wrong) {
      console.error(JSON.stringify({ error: wrong, code: 'invalid_argument' }, null, 2))
      return EXIT.usage
    }
    const config = loadConfig()
    const log = createLogger({ level: 'warn', name: 'sluice' })
    const { redis, sql } = await openClients(config, 'ops', log, { sqlMax: config.rollup.shards + 1 })
    const queue = createShardedQueue(redis, config.queue)
    const store = createStore(sql)
    const close = async () => {
      await sql.end({ timeout: 5 })
      await redis.quit()
    }
    const out = await (
      {
        queue: async () => ({
          ...(await queue.depth()),
          // Shards of another QUEUE_SHARDS that still hold entries (workers drain them too).
          stranded: (await queue.stranded()).map(({ queue, length }) => ({ stream: queue.stream, length })),
          // Their dead letters, which dead-letters lists and replay puts on the current shards.
          stranded_dead_letters: await queue.strandedDeadLetters(),
        }),
        'dead-letters': () => queue.deadLetters(Number(values.count)),
        replay: () => queue.replay(values.all ? 'all' : rest),
        // The cron job itself: visits close only once nothing still queued could extend them.
        rollup: () => createJobs({ queue, store, log }, { rollup: config.rollup }).rollup!.run(new AbortController().signal),
        'rollup-status': async () => ({ ...(await store.rollupLag()), shards: await store.rollupShards() }),
        'rollup-rejects': () => store.rollupRejects(Number(values.count)),
        'rollup-replay': () => store.replayRejects(values.all ? 'all' : rest),
        retention: async () => {
          const sites = createSites(sql)
          return {
            ...(await store.retention({ ...config.retention })),
            removedSitesSwept: await sites.sweepRemoved(),
            revokedTokensDeleted: await sites.purgeRevokedTokens(),
          }
        },
      }[command as 'queue'] ?? (() => runSitesCommand(sql, command, rest, values))
    )().catch(async (err: unknown) => {
      if (!(err instanceof SitesError)) throw err
      console.error(JSON.stringify({ error: err.message, code: err.code, ...(err.details ? { details: err.details } : {}) }, null, 2))
      return FAILED
    })
    await close()
    if (out === FAILED) return EXIT.failed
    if (out === null) {
      console.error(USAGE)
      return EXIT.usage
    }
    console.log(JSON.stringify(out, null, 2))
    return EXIT.ok
  },
  { oneShot: true },
)
