import { describe, expect, test } from 'bun:test'
import { LIMITS, PATH_MAX_BYTES } from '../../internal/event/event.ts'
import { eventually, incompressibleCjk, pipeline, runBinary } from '../../internal/testkit/testkit.ts'

// No value the API accepts can stop the rollups: the largest accepted value of every
// indexed text field, in incompressible multibyte text, through the real binaries.

const SITE_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-'
const randomOf = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('')
/** n random characters of three UTF-8 bytes each (CJK), which no compressor can shrink. */
const cjk = (n: number) => incompressibleCjk(n, true)
/** n random astral characters (four UTF-8 bytes, two UTF-16 units each). */
const astral = (n: number) => Array.from({ length: n }, () => String.fromCodePoint(0x20000 + Math.floor(Math.random() * 40_000))).join('')

/** The largest event the API accepts in every indexed field: site_id, event_type, path. */
function largest(kind: 'cjk' | 'astral') {
  const path = kind === 'cjk' ? `/${cjk(682)}x` : `/${astral(511)}xyz`
  return {
    site_id: randomOf(SITE_CHARS, LIMITS.site_id),
    event_type: kind === 'cjk' ? cjk(LIMITS.event_type) : astral(LIMITS.event_type / 2),
    path,
    user_id: cjk(LIMITS.user_id),
    timestamp: '2025-11-14T10:00:00Z',
  }
}

describe('rollup poison', () => {
  const p = pipeline({ STATS_PUBLIC: 'true' })
  const post = (body: unknown) => fetch(`${p.base}/event`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const rolledViews = async (site: string) =>
    (await p.db.sql`select coalesce(sum(views), 0)::int as n from rollup_year where site_id = ${site}`)[0]!.n as number

  test('the largest accepted values of every indexed field are all counted, with every other site', async () => {
    const big = [...Array.from({ length: 10 }, () => largest('cjk')), ...Array.from({ length: 10 }, () => largest('astral'))]
    for (const e of big) {
      expect(Buffer.byteLength(e.path)).toBe(PATH_MAX_BYTES)
      expect((await post(e)).status).toBe(202)
    }
    for (let i = 0; i < 5; i++)
      expect((await post({ site_id: 'plain', event_type: 'pageview', path: `/p${i}`, timestamp: '2025-11-14T10:00:00Z' })).status).toBe(202)
    await eventually(async () => ((await p.db.sql`select count(*)::int as n from events`)[0]!.n as number) === 25)

    const run = await runBinary('cron', p.env, ['--once', 'rollup'])
    expect(run.code).toBe(0)
    for (const e of big) expect(await rolledViews(e.site_id)).toBe(1)
    expect(await rolledViews('plain')).toBe(5)
    const paths = await p.db.sql`select count(*)::int as n from rollup_hour_paths where path = any(${big.map((e) => e.path)})`
    expect(paths[0]!.n).toBe(20)
    expect((await p.db.sql`select count(*)::int as n from rollup_rejects`)[0]!.n).toBe(0)
  })

  test('a path one byte over the bound is a 400 that names it', async () => {
    const res = await post({ ...largest('cjk'), path: `/${cjk(683)}` })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({
      code: 'invalid_event',
      details: [{ field: 'path', message: `path must be at most ${PATH_MAX_BYTES} bytes of UTF-8` }],
    })
  })

  test('a stored row that cannot be rolled up is set aside, shown and counted, and the rollup goes on', async () => {
    // A row that did not come through today's API (an older version, a hand-written insert).
    const poison = crypto.randomUUID()
    await p.db.sql`insert into events (event_id, site_id, event_type, path, user_id, ts, received_at)
                   values (${poison}, 'poisoned', 'pageview', ${`/${cjk(2047)}`}, 'u', '2025-11-14T10:00:00Z', now())`
    expect((await post({ site_id: 'after', event_type: 'pageview', path: '/', timestamp: '2025-11-14T10:00:00Z' })).status).toBe(202)
    await eventually(async () => (await p.db.sql`select 1 from events where site_id = 'after'`).length === 1)

    const status = JSON.parse((await runBinary('sluice', p.env, ['rollup-status'])).output)
    expect(status).toMatchObject({ unrolled: 2, rejected: 0 })
    // Each shard with its watermark and what it has not yet counted: the two rows, between them.
    type Shard = { shard: number; of: number; watermark: string; unrolled: number }
    expect(status.shards.map((s: Shard) => [s.shard, s.of])).toEqual([
      [0, 2],
      [1, 2],
    ])
    expect(status.shards.reduce((n: number, s: Shard) => n + s.unrolled, 0)).toBe(2)
    expect(status.ageSeconds).toBeGreaterThan(0)

    const run = await runBinary('cron', p.env, ['--once', 'rollup'])
    expect(run.code).toBe(0)
    expect(run.output).toContain('set aside')
    expect(await rolledViews('after')).toBe(1)
    expect(await rolledViews('poisoned')).toBe(0)

    const after = JSON.parse((await runBinary('sluice', p.env, ['rollup-status'])).output)
    expect(after.shards.map((s: Shard) => s.unrolled)).toEqual([0, 0])
    const rejects = JSON.parse((await runBinary('sluice', p.env, ['rollup-rejects'])).output)
    // A path longer than the API accepts is refused by the rollup itself (22001), before Postgres's index would (54000).
    expect(rejects).toMatchObject([
      { event_id: poison, code: '22001', error: expect.stringContaining('over the 2048 the API accepts'), row: { site_id: 'poisoned' } },
    ])
    expect(JSON.parse((await runBinary('sluice', p.env, ['rollup-status'])).output)).toMatchObject({ ageSeconds: 0, unrolled: 0, rejected: 1 })

    // Put back, it fails again and is set aside again: never lost, never a stall.
    expect(JSON.parse((await runBinary('sluice', p.env, ['rollup-replay', '--all'])).output)).toEqual([poison])
    expect((await runBinary('cron', p.env, ['--once', 'rollup'])).code).toBe(0)
    expect(JSON.parse((await runBinary('sluice', p.env, ['rollup-status'])).output)).toMatchObject({ ageSeconds: 0, unrolled: 0, rejected: 1 })
  })
})
