import { describe, expect, test } from 'bun:test'
import { createQueue, fieldsOf } from '../../internal/queue/queue.ts'
import { createStore } from '../../internal/store/store.ts'
import { envFor, runBinary, isolated } from '../../internal/testkit/testkit.ts'

const env = isolated()

describe('sluice (operator command)', () => {
  test('lists dead letters and replays them onto the stream', async () => {
    const queue = createQueue(env.r.redis, env.r.queue)
    await queue.ensureGroup()
    const event = {
      event_id: crypto.randomUUID(),
      site_id: 's',
      event_type: 'pageview',
      path: null,
      user_id: null,
      timestamp: '2025-11-14T10:00:00.000Z',
      received_at: 1,
    }
    await env.r.redis.xadd(env.r.queue.stream, '*', 'e', JSON.stringify(event))
    await env.r.redis.xadd(env.r.queue.stream, '*', 'junk', 'x')
    const reader = env.r.redis.duplicate()
    const { entries, bad } = await queue.read(reader, 'c', { count: 10, blockMs: 10 })
    reader.disconnect()
    await queue.deadLetter([...entries.map((e) => ({ id: e.id, fields: fieldsOf(e), reason: 'test' })), ...bad])

    const list = await runBinary('sluice', envFor(env.db, env.r), ['dead-letters'])
    expect(list.code).toBe(0)
    const letters = JSON.parse(list.output) as { id: string; fields: { reason: string } }[]
    expect(letters.map((l) => l.fields.reason)).toEqual(['test', expect.stringContaining('no "b" or "e" field')])

    const replay = await runBinary('sluice', envFor(env.db, env.r), ['replay', '--all'])
    expect(replay.code).toBe(0)
    expect(JSON.parse(replay.output)).toEqual({
      replayed: [letters[0]!.id],
      skipped: [{ id: letters[1]!.id, reason: 'it holds no event (it was not a valid entry)' }],
    })
    const back = await env.r.redis.xrange(env.r.queue.stream, '-', '+')
    expect(back.flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!)).map((e: { event_id: string }) => e.event_id)).toEqual([event.event_id])

    const depth = JSON.parse((await runBinary('sluice', envFor(env.db, env.r), ['queue'])).output)
    expect(depth).toMatchObject({ length: 1, deadLetters: 1 })
  })

  test('rollup closes no visit that an event still waiting in the queue could extend, as the cron job does', async () => {
    const MIN = 60_000
    const now = Date.now()
    const visit = (min: number) => ({
      event_id: crypto.randomUUID(),
      site_id: 'cli-visits',
      event_type: 'pageview',
      path: '/',
      user_id: 'a',
      timestamp: new Date(now - min * MIN).toISOString(),
      received_at: now - min * MIN,
    })
    // A visitor's first page view is stored (received 40 minutes ago); the next (35 minutes
    // ago) still waits in the queue, as when the workers are behind.
    await createStore(env.db.sql).insertEvents([visit(40)])
    const stream = `${env.r.queue.stream}:behind`
    await env.r.redis.xadd(stream, `${now - 35 * MIN}-0`, 'e', JSON.stringify(visit(35)))
    const run = await runBinary('sluice', envFor(env.db, env.r, { QUEUE_STREAM: stream }), ['rollup'])
    expect(run.code).toBe(0)
    expect(JSON.parse(run.output)).toMatchObject({ ran: true, events: 1 })
    // Closed now, it would count as a visit, and the waiting event as a second one.
    expect((await env.db.sql`select count(*)::int as n from visits_open where site_id = 'cli-visits'`)[0]!.n).toBe(1)
    expect((await env.db.sql`select count(*)::int as n from rollup_day_visits where site_id = 'cli-visits'`)[0]!.n).toBe(0)
  })

  test('an argument Redis or Postgres would refuse, or an unknown option, is a usage error (64) naming it, never a stack trace', async () => {
    const env64 = envFor(env.db, env.r)
    for (const [args, says] of [
      [['dead-letters', '--count', 'abc'], '--count must be a whole number'],
      [['replay', 'not-an-id'], "a dead letter's id looks like"],
      [['rollup-replay', 'nope'], "a set-aside event's id is its event_id, a UUID"],
    ] as const) {
      const { code, output } = await runBinary('sluice', env64, [...args])
      expect({ args, code }).toEqual({ args, code: 64 })
      expect(JSON.parse(output)).toEqual({ error: expect.stringContaining(says), code: 'invalid_argument' })
    }
    const unknown = await runBinary('sluice', env64, ['queue', '--bogus'])
    expect(unknown.code).toBe(64)
    expect(unknown.output.trim().split('\n')).toEqual([expect.stringMatching(/^sluice-sluice: Unknown option '--bogus'/)])
  })

  test('manages sites, tokens and links, printing JSON, and a bad request as a JSON error with its code', async () => {
    const run = async (...args: string[]) => {
      const { code, output } = await runBinary('sluice', envFor(env.db, env.r), args)
      return { code, json: code === 0 || code === 1 ? JSON.parse(output) : output }
    }
    expect(await run('sites', 'add', 'cli-site', '--domain', 'cli.example', '--domain', 'www.cli.example', '--timezone', 'America/New_York')).toMatchObject({
      code: 0,
      json: { site_id: 'cli-site', domains: ['cli.example', 'www.cli.example'], timezone: 'America/New_York', public: false },
    })
    expect(await run('sites', 'update', 'cli-site', '--public', '--no-domains')).toMatchObject({ code: 0, json: { public: true, domains: [] } })
    expect((await run('sites', 'list')).json).toEqual([expect.objectContaining({ site_id: 'cli-site' })])
    expect(await run('sites', 'add', 'cli-site')).toMatchObject({ code: 1, json: { code: 'site_exists' } })
    expect(await run('sites', 'add', 'other', '--timezone', 'Mars/Base')).toMatchObject({
      code: 1,
      json: { code: 'invalid_site', details: [{ field: 'timezone' }] },
    })
    const token = await run('tokens', 'create', '--kind', 'read', '--site', 'cli-site', '--name', 'client')
    expect(token).toMatchObject({ code: 0, json: { kind: 'read', site_id: 'cli-site', name: 'client', token: expect.stringMatching(/^sl_/) } })
    const link = await run('links', 'create', '--site', 'cli-site')
    expect(link.json.path).toBe(`/share/cli-site#link=${link.json.token}`)
    expect((await run('tokens', 'list')).json.map((t: { id: string }) => t.id)).toEqual([token.json.id])
    // Contradictory options, and an id of the other kind, are refused by name.
    expect(await run('sites', 'update', 'cli-site', '--public', '--private')).toMatchObject({
      code: 1,
      json: { code: 'invalid_site', details: [{ field: 'public' }] },
    })
    expect(await run('sites', 'update', 'cli-site', '--domain', 'a.example', '--no-domains')).toMatchObject({ code: 1, json: { code: 'invalid_site' } })
    expect(await run('tokens', 'revoke', link.json.id)).toMatchObject({
      code: 1,
      json: { code: 'token_not_found', error: expect.stringContaining('links revoke') },
    })
    expect(await run('links', 'revoke', token.json.id)).toMatchObject({ code: 1, json: { code: 'token_not_found' } })
    expect((await run('links', 'revoke', link.json.id)).json.revoked_at).toBeString()
    expect(await run('sites', 'remove', 'cli-site')).toMatchObject({ code: 0, json: { site_id: 'cli-site', deleted: { events: 0, event_ids: 0 } } })
    expect(await run('sites', 'show', 'cli-site')).toMatchObject({ code: 1, json: { code: 'site_not_found' } })
    expect((await runBinary('sluice', envFor(env.db, env.r), ['sites', 'frobnicate'])).code).toBe(64)
  }, 60_000)

  test('prints usage on standard output and exits 0 when asked with help, --help or -h', async () => {
    for (const args of [['help'], ['--help'], ['-h'], ['queue', '--help']]) {
      const { code, output } = await runBinary('sluice', envFor(env.db, env.r), args)
      expect({ args, code }).toEqual({ args, code: 0 })
      expect(output).toContain('usage: bun run sluice -- <command>')
    }
  })

  test('prints usage and exits 64 for an unknown command', async () => {
    const { code, output } = await runBinary('sluice', envFor(env.db, env.r), ['frobnicate'])
    expect(code).toBe(64)
    expect(output).toContain('usage: bun run sluice -- <command>')
  })
})
