import { describe, expect, test } from 'bun:test'
import { createMetrics } from '../metrics/metrics.ts'
import { createQueue } from '../queue/queue.ts'
import { isolated } from '../testkit/testkit.ts'
import { createIngest } from './ingest.ts'

const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
const GOOGLEBOT = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'
const HEADLESS = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36'
const event = { site_id: 'enrich-site', event_type: 'pageview', timestamp: new Date().toISOString(), path: '/pricing', user_id: 'u-1' }
const env = isolated()

let streams = 0

/** An ingest of the test's own, writing to a stream of its own. */
function setup(options: { trustProxy?: boolean; forwardToken?: string } = {}) {
  const metrics = createMetrics('api')
  const stream = `${env.r.queue.stream}:${++streams}`
  const ingest = createIngest(
    { queue: createQueue(env.r.redis, { ...env.r.queue, stream }), metrics },
    { bodyLimitBytes: 65536, batchMax: 10, maxFutureMs: 300_000, ...options },
  )
  /** Every event on the stream, as the worker will see it. */
  const stored = async () => (await env.r.redis.xrange(stream, '-', '+')).flatMap(([, f]) => JSON.parse(f[f.indexOf('b') + 1]!) as Record<string, unknown>[])
  return { ingest, metrics, stored, stream }
}
const req = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  new Request(`http://sluice.test${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } })
const peer = (address: string) => ({ requestIP: () => ({ address }) })

describe('enrichment at ingest', () => {
  test('a browser event gets browser, OS, device, country, source and channel, and neither its IP nor its user agent is on the stream', async () => {
    const { ingest, stored, stream } = setup({ trustProxy: true })
    const res = await ingest.event(
      req(
        '/event',
        { ...event, referrer: 'https://www.google.com/search?q=sluice', utm_campaign: 'launch', screen_width: 390 },
        { 'user-agent': IPHONE, 'x-forwarded-for': '8.8.8.8' },
      ),
    )
    expect(res.status).toBe(202)
    const [e] = await stored()
    expect(e).toMatchObject({
      browser: 'Mobile Safari',
      os: 'iOS',
      device: 'Mobile',
      country: 'US',
      source: 'Google',
      channel: 'Organic Search',
      referrer: 'google.com',
      utm_campaign: 'launch',
    })
    const text = JSON.stringify(await env.r.redis.xrange(stream, '-', '+'))
    expect(text).not.toContain('8.8.8.8')
    expect(text).not.toContain('iPhone')
    expect(text).not.toContain('q=sluice')
  })

  test('X-Forwarded-For is ignored unless TRUST_PROXY is set: the socket peer is the client', async () => {
    const { ingest, stored } = setup()
    await ingest.event(req('/event', event, { 'user-agent': CHROME, 'x-forwarded-for': '8.8.8.8' }), peer('127.0.0.1'))
    const [e] = await stored()
    expect(e!.country).toBeUndefined()
    expect(e).toMatchObject({ browser: 'Chrome', os: 'Windows', device: 'Desktop', source: 'Direct / None', channel: 'Direct' })
  })

  test('UTM tags decide the source and channel, and a referrer from the page’s own origin is no referrer', async () => {
    const { ingest, stored } = setup()
    await ingest.event(
      req('/event', { ...event, referrer: 'https://shop.example/cart', utm_source: 'newsletter', utm_medium: 'email' }, { origin: 'https://shop.example' }),
    )
    const [e] = await stored()
    expect(e).toMatchObject({ source: 'newsletter', channel: 'Email', utm_source: 'newsletter', utm_medium: 'email' })
    expect(e!.referrer).toBeUndefined()
  })

  test('crawlers and headless browsers are answered 202 but not stored, and counted by reason', async () => {
    const { ingest, stored, metrics } = setup()
    for (const ua of [GOOGLEBOT, HEADLESS]) {
      const res = await ingest.event(req('/event', event, { 'user-agent': ua }))
      expect(res.status).toBe(202)
      expect(((await res.json()) as { status: string }).status).toBe('accepted')
    }
    const batch = await ingest.events(req('/events', [event, event], { 'user-agent': GOOGLEBOT }))
    expect(batch.status).toBe(202)
    expect(await stored()).toEqual([])
    expect(metrics.events.bots).toEqual({ crawler: 3, headless: 1 })
    expect(metrics.events.accepted).toBe(0)
  })

  test('servers sending their own events are not bots: curl, Node, Python requests, Go, and no user agent at all', async () => {
    const { ingest, stored } = setup()
    for (const ua of ['curl/8.5.0', 'node', 'python-requests/2.31.0', 'Go-http-client/1.1', null]) {
      const res = await ingest.event(req('/event', event, ua === null ? {} : { 'user-agent': ua }))
      expect(res.status).toBe(202)
    }
    expect(await stored()).toHaveLength(5)
  })

  test('a browser cannot claim a visitor’s IP or user agent: those fields need the forwarding token', async () => {
    const { ingest } = setup({ forwardToken: 'forward-secret' })
    const res = await ingest.event(req('/event', { ...event, ip: '8.8.8.8', user_agent: GOOGLEBOT }, { 'user-agent': CHROME }))
    expect(res.status).toBe(400)
    const body = (await res.json()) as { details: { field: string; message: string }[] }
    expect(body.details.map((d) => d.field)).toEqual(['ip', 'user_agent'])
    expect(body.details[0]!.message).toContain('INGEST_FORWARD_TOKEN')
    const wrong = await ingest.event(req('/event', { ...event, ip: '8.8.8.8' }, { authorization: 'Bearer nope' }))
    expect(wrong.status).toBe(400)
  })

  test('a trusted server forwards each visitor’s IP and user agent per event in a batch; a forwarded bot is dropped', async () => {
    const { ingest, stored } = setup({ forwardToken: 'forward-secret' })
    const res = await ingest.events(
      req(
        '/events',
        [
          { ...event, ip: '8.8.8.8', user_agent: IPHONE },
          { ...event, ip: '2001:4860:4860::8888', user_agent: CHROME },
          { ...event, user_agent: GOOGLEBOT },
        ],
        // The scheme in any case, as the stats API takes it.
        { authorization: 'bearer forward-secret', 'user-agent': 'python-requests/2.31.0' },
      ),
    )
    expect(res.status).toBe(202)
    const body = (await res.json()) as { accepted: number }
    expect(body.accepted).toBe(3)
    const events = await stored()
    expect(events.map((e) => [e.browser, e.country])).toEqual([
      ['Mobile Safari', 'US'],
      ['Chrome', expect.stringMatching(/^[A-Z]{2}$/)],
    ])
    expect(JSON.stringify(events)).not.toContain('8.8.8.8')
  })

  test('props are stored with every value as a string', async () => {
    const { ingest, stored } = setup()
    await ingest.event(req('/event', { ...event, event_type: 'signup', props: { plan: 'pro', seats: 5, annual: true, ratio: 1.5 } }))
    const [e] = await stored()
    expect(e!.props).toEqual({ plan: 'pro', seats: '5', annual: 'true', ratio: '1.5' })
  })
})
