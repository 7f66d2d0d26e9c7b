import { describe, expect, test } from 'bun:test'
import { eventually, pipeline, runBinary } from '../../internal/testkit/testkit.ts'

// After a run through the real binaries, with logging at its most verbose, no client IP
// and no user agent appears in any Postgres table, any Redis key or stream entry, or any
// log line. The IPs arrive both as the forwarding header (TRUST_PROXY) and as a trusted
// server's per-event field. Events sent without user_id get the API's visitor id, a hash of
// site, IP and user agent: the hash is stored, the IP is not, and the day's salt in Redis
// holds no IP either.

const IPS = ['81.2.69.142', '133.242.0.3', '2a00:1450:4001:0:0:0:0:1', '203.0.113.77']
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 PrivacyProbe/1.0'

describe('privacy', () => {
  const stack = pipeline({ STATS_TOKEN: 'privacy', TRUST_PROXY: 'true', INGEST_FORWARD_TOKEN: 'privacy-forward', LOG_LEVEL: 'trace' })

  test('no raw IP address and no user agent is kept anywhere after a run', async () => {
    const { base, db, r, env } = stack
    const event = { site_id: 'privacy-site', event_type: 'pageview', path: '/', timestamp: new Date().toISOString() }
    for (const ip of IPS) {
      const res = await fetch(`${base}/event`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': ip, 'user-agent': UA },
        body: JSON.stringify({ ...event, referrer: `https://ref.example/?ip=${ip}` }),
      })
      expect(res.status).toBe(202)
    }
    const batch = await fetch(`${base}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer privacy-forward' },
      body: JSON.stringify(IPS.map((ip) => ({ ...event, ip, user_agent: UA }))),
    })
    expect(batch.status).toBe(202)
    // An invalid event is logged nowhere with its IP either.
    await fetch(`${base}/event`, { method: 'POST', headers: { 'x-forwarded-for': IPS[0]!, 'content-type': 'application/json' }, body: '{"site_id":' })
    expect(
      await eventually(async () => ((await db.sql`select count(*)::int as n from events`)[0]!.n as number) === IPS.length * 2, { timeoutMs: 30_000 }),
    ).toBe(true)
    const rolled = await runBinary('cron', env, ['--once', 'rollup'])
    expect(rolled.code).toBe(0)
    expect((await db.sql`select count(distinct country)::int as n from events`)[0]!.n).toBeGreaterThan(1)
    // One visitor id per IP (same user agent): the browser's request and the server's forward agree.
    const ids = await db.sql`select user_id, count(*)::int as n from events group by user_id`
    expect(ids.map((x) => [(x.user_id as string).length, x.n])).toEqual(IPS.map(() => [22, 2]))
    expect((await r.redis.keys(`${env.IDENTITY_KEY_PREFIX}:salt:*`)).length).toBe(1)

    const tables = await db.sql`select tablename from pg_tables where schemaname = 'public'`
    let postgresText = ''
    for (const { tablename } of tables) postgresText += JSON.stringify(await db.sql`select * from ${db.sql(tablename as string)}`)
    let redisText = ''
    // This test's keys: the stream, its dead letters, shards and consumer-group state share the prefix.
    const prefix = r.queue.stream.split(':')[0]!
    for (const key of [...(await r.redis.keys(`${prefix}:*`)), ...(await r.redis.keys(`{${prefix}:*`))]) {
      const type = await r.redis.type(key)
      redisText +=
        key + JSON.stringify(type === 'stream' ? await r.redis.xrange(key, '-', '+') : type === 'string' ? await r.redis.get(key) : await r.redis.dump(key))
    }
    const logs = stack.api.output() + stack.worker.output() + rolled.output
    expect(logs.length).toBeGreaterThan(0)
    for (const [where, text] of Object.entries({ postgres: postgresText, redis: redisText, logs })) {
      for (const secret of [...IPS, '2a00:1450:4001::1', 'PrivacyProbe'])
        expect({ where, found: text.includes(secret) ? secret : null }).toEqual({ where, found: null })
    }
  }, 60_000)
})
