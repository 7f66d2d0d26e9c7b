import { describe, expect, test } from 'bun:test'
import { envFor, freePort, runBinary, spawnBinary, waitForReady, isolated } from '../../internal/testkit/testkit.ts'

const env = isolated()

/** The real sluice-api on a free port with these settings, once it answers /readyz; `base` is its address. */
async function startApi(settings: Record<string, string>) {
  const port = await freePort()
  const api = spawnBinary('api', envFor(env.db, env.r, { PORT: String(port), ...settings }))
  const base = `http://127.0.0.1:${port}`
  await waitForReady(`${base}/readyz`, api)
  return { api, base }
}

describe('sluice-api', () => {
  test('serves until SIGTERM, then exits 0', async () => {
    const { api } = await startApi({ STATS_TOKEN: 't' })
    expect(await api.stop()).toBe(0)
  })

  test('serves ingest from its native routes with the same JSON answers as the app', async () => {
    const { api, base } = await startApi({ STATS_TOKEN: 't', INGEST_BODY_LIMIT_BYTES: '2048' })
    const post = (path: string, body: string | ReadableStream, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
      fetch(`${base}${path}`, { method: 'POST', body, headers })
    const event = JSON.stringify({ site_id: 's', event_type: 'pageview', timestamp: new Date().toISOString() })
    const code = async (res: Response) => [res.status, ((await res.json()) as { code?: string; status?: string }).code ?? 'accepted']

    expect(await code(await post('/event', event))).toEqual([202, 'accepted'])
    expect(await code(await post('/events', `[${event}]`, { 'content-type': 'text/plain' }))).toEqual([202, 'accepted'])
    expect(await code(await post('/event', event, { 'content-type': 'application/xml' }))).toEqual([415, 'unsupported_media_type'])
    expect(await code(await post('/event', 'x'.repeat(5000)))).toEqual([413, 'body_too_large'])
    const chunked = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode('x'.repeat(5000)))
        c.close()
      },
    })
    expect(await code(await post('/event', chunked))).toEqual([413, 'body_too_large'])
    const get = await fetch(`${base}/event`)
    expect(await code(get)).toEqual([405, 'method_not_allowed'])
    const preflight = await fetch(`${base}/event`, { method: 'OPTIONS', headers: { origin: 'https://a.example', 'access-control-request-method': 'POST' } })
    expect(preflight.status).toBe(204)
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*')
    expect(await api.stop()).toBe(0)
  })

  test('with public stats, still takes STATS_TOKEN as a token and refuses a wrong one', async () => {
    const { api, base } = await startApi({ STATS_TOKEN: 'stats-t', STATS_PUBLIC: 'true' })
    const stats = (authorization?: string) =>
      fetch(`${base}/v1/stats?site_id=s&from=2025-11-01&to=2025-11-02&granularity=day`, { headers: authorization ? { authorization } : {} })
    expect((await stats()).status).toBe(200)
    expect((await stats('Bearer stats-t')).status).toBe(200)
    const wrong = await stats('Bearer not-it')
    expect(wrong.status).toBe(401)
    expect(((await wrong.json()) as { code: string }).code).toBe('unauthorized')
    expect(await api.stop()).toBe(0)
  })

  test("answers a query Postgres cancels after QUERY_TIMEOUT_MS with 503 query_timeout, though that is longer than Bun's default idle timeout", async () => {
    const { api, base } = await startApi({ STATS_TOKEN: 't', QUERY_TIMEOUT_MS: '21000' })
    let release = () => {}
    // Every stats read looks up the rollup watermark: hold that table, and the query waits past the timeout.
    const held = env.db.sql.begin(async (tx) => {
      await tx`lock table rollup_shards in access exclusive mode`
      await new Promise<void>((resolve) => (release = resolve))
    })
    try {
      await Bun.sleep(100)
      const started = Date.now()
      const res = await fetch(`${base}/v1/stats?site_id=s&from=2025-11-01&to=2025-11-02`, { headers: { authorization: 'Bearer t' } })
      expect(Date.now() - started).toBeGreaterThanOrEqual(20_500)
      expect(res.status).toBe(503)
      expect(((await res.json()) as { code: string }).code).toBe('query_timeout')
    } finally {
      release()
      await held
    }
    expect(await api.stop()).toBe(0)
  }, 45_000)

  test('a port another process holds, or a HOST not of this machine, is one line naming the setting, not a crash', async () => {
    const taken = await freePort()
    const holder = Bun.listen({ hostname: '0.0.0.0', port: taken, socket: { data() {} } })
    try {
      const busy = await runBinary('api', envFor(env.db, env.r, { PORT: String(taken), STATS_TOKEN: 't' }))
      expect(busy.code).toBe(69)
      expect(busy.output.trim().split('\n')).toEqual([`sluice-api: cannot listen on 0.0.0.0:${taken}: another process holds the port; stop it, or set PORT`])
    } finally {
      holder.stop(true)
    }
    const far = await runBinary('api', envFor(env.db, env.r, { HOST: '10.255.255.1', PORT: String(await freePort()), STATS_TOKEN: 't' }))
    expect(far.code).toBe(78)
    expect(far.output.trim().split('\n')).toEqual([expect.stringMatching(/^sluice-api: config: HOST: cannot listen on 10\.255\.255\.1:\d+ \(EADDRNOTAVAIL\)/)])
  })

  test('refuses to start without a stats token, in one line naming the setting', async () => {
    const { code, output } = await runBinary('api', envFor(env.db, env.r, { PORT: String(await freePort()), STATS_TOKEN: '', STATS_PUBLIC: 'false' }))
    expect(code).toBe(78)
    expect(output.trim()).toBe('sluice-api: config: STATS_TOKEN: must be set so that stats need a token (or set STATS_PUBLIC=true to serve stats without one)')
  })

  test('exits 69 with one line saying which Redis it tried and how to fix it', async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`
    const { code, output } = await runBinary('api', { ...envFor(env.db, env.r, { STATS_TOKEN: 't' }), REDIS_URL: dead })
    expect(code).toBe(69)
    expect(output.trim().split('\n')).toEqual([
      `sluice-api: cannot reach Redis at ${dead} (ECONNREFUSED): start redis-server, or set REDIS_URL to a reachable server`,
    ])
  })
})
