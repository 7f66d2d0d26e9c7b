import { describe, expect, test } from 'bun:test'
import { Hono } from 'hono'
import { dashboardRoutes } from './dashboard.ts'

const app = new Hono()
dashboardRoutes(app)

describe('GET /dashboard', () => {
  test('loads its script from a URL that carries a hash of the script, served as JavaScript that parses', async () => {
    const page = await (await app.request('/dashboard')).text()
    const src = /<script src="(\/assets\/dashboard\.js\?v=[0-9a-f]{12})"><\/script>/.exec(page)?.[1]
    expect(src).toBeDefined()
    const res = await app.request(src!)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('application/javascript')
    const script = await res.text()
    expect(() => new Function(script)).not.toThrow()
  })

  test('has a card for each visit metric, the realtime count, and the Goals panel', async () => {
    const page = await (await app.request('/dashboard')).text()
    for (const id of ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration', 'events', 'realtime-count', 'p-pages', 'p-goals'])
      expect(page).toContain(`id="${id}"`)
  })

  test("shows each card's change against the period before, the chart's time zone and an Export button", async () => {
    const page = await (await app.request('/dashboard')).text()
    for (const id of ['visitors-change', 'visits-change', 'visit_duration-change', 'zone', 'export']) expect(page).toContain(`id="${id}"`)
  })

  test('gives the token field no name, so a form sent before the script runs carries no token in its URL', async () => {
    const page = await (await app.request('/dashboard')).text()
    const field = /<input[^>]*id="token"[^>]*>/.exec(page)?.[0]
    expect(field).toBeDefined()
    expect(field).not.toContain('name=')
  })
})

describe('GET /share/:site', () => {
  test('is the same page, sent with no referrer so the link leaks nowhere', async () => {
    const res = await app.request('/share/example.com')
    expect(res.status).toBe(200)
    expect(res.headers.get('referrer-policy')).toBe('no-referrer')
    expect(await res.text()).toBe(await (await app.request('/dashboard')).text())
  })
})
