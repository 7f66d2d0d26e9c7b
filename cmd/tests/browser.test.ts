import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { type Browser, chromium, type Page } from 'playwright-core'
import { eventually, pipeline } from '../../internal/testkit/testkit.ts'

// A real headless Chromium (Debian's) loads a page on another origin that includes /t.js,
// arriving from a referrer with UTM tags, navigates twice (once through history.pushState)
// and sends custom events, queued before the script ran and after; they must reach Postgres
// with their dimensions. Then the dashboard must show what /v1/query says, also once a
// click on a row has filtered the page. The dashboard test reads what the first test sent.
// By default the tracker must leave nothing on the device (no localStorage, no cookie); with
// data-persist="true" it keeps its id there.

const DOCS = join(import.meta.dir, '..', '..', 'docs')
const TOKEN = 'browser-token'
const FORWARD = 'browser-forward'
const stack = pipeline({ STATS_TOKEN: TOKEN, INGEST_FORWARD_TOKEN: FORWARD })
// Headless Chromium says "HeadlessChrome", which the API drops as a bot.
const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0'
const SAFARI = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15'
const STUB = 'window.sluice=window.sluice||function(){(window.sluice.q=window.sluice.q||[]).push(arguments)}'
let site: ReturnType<typeof Bun.serve>
let browser: Browser

const page = (api: string, title: string, persist = false) => `<!doctype html><meta charset="utf-8"><title>${title}</title>
<h1>${title}</h1>
<a id="spa" href="/pricing" onclick="history.pushState({}, '', '/pricing'); document.querySelector('h1').textContent = 'Pricing'; return false">Pricing (SPA)</a>
<a id="next" href="/about">About</a>
${title === 'About' ? `<script>${STUB}; sluice('signup', {props: {plan: 'pro'}})</script>` : ''}
<script defer src="${api}/t.js" data-site="${persist ? 'persist-site' : 'browser-site'}"${persist ? ' data-persist="true"' : ''}></script>`

beforeAll(async () => {
  site = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (req) => {
      const { pathname } = new URL(req.url)
      return new Response(page(stack.base, pathname === '/about' ? 'About' : 'Home', pathname.startsWith('/persist')), {
        headers: { 'Content-Type': 'text/html' },
      })
    },
  })
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}, 60_000)
afterAll(async () => {
  await browser?.close()
  site?.stop(true)
}, 30_000)

const stored = async (n: number) =>
  eventually(async () => Number((await stack.db.sql`select count(*)::int as n from events where site_id = 'browser-site'`)[0]!.n) === n)

type QueryAnswer = { results: { dimensions: string[]; metrics: number[] }[] }
type Filter = [string, string, string[]]
async function query(body: Record<string, unknown>): Promise<QueryAnswer> {
  const res = await fetch(`${stack.base}/v1/query`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ site_id: 'browser-site', date_range: 'day', ...body }),
  })
  expect(res.status).toBe(200)
  return (await res.json()) as QueryAnswer
}
const totals = async (filters: Filter[]) => (await query({ metrics: ['visitors', 'pageviews', 'events'], filters })).results[0]!.metrics
const breakdown = async (dim: string, filters: Filter[]) =>
  (await query({ metrics: ['visitors', 'pageviews'], dimensions: [dim], filters, order_by: [['visitors', 'desc']], limit: 10 })).results.map((r) => [
    r.dimensions[0],
    ...r.metrics,
  ])

const number = (s: string | null) => Number(s?.replaceAll(',', ''))
const cards = async (dash: Page) => Promise.all(['#visitors', '#pageviews', '#events'].map(async (id) => number(await dash.textContent(id))))
const panel = (dash: Page, id: string) =>
  dash.$$eval(`#p-${id} tbody tr`, (trs) =>
    trs.map((tr) => [tr.getAttribute('data-value'), ...[...tr.children].slice(1).map((td) => Number(td.textContent!.replaceAll(',', '')))]),
  )
const loaded = (dash: Page) => dash.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 })

/** Every panel and the cards show what /v1/query answers under `filters`. */
async function expectPageMatches(dash: Page, filters: Filter[]) {
  expect(await dash.textContent('#error')).toBe('')
  expect(await cards(dash)).toEqual(await totals(filters))
  for (const [id, dim] of [
    ['sources', 'source'],
    ['pages', 'path'],
    ['countries', 'country'],
    ['devices', 'device'],
  ] as const)
    expect(await panel(dash, id)).toEqual(await breakdown(dim, filters))
  expect(await dash.$('#chart canvas')).not.toBeNull()
  expect(await dash.textContent('#chart-note')).toBe('')
}

describe('in a real browser', () => {
  test('the tracker sends page views with referrer, UTM tags and screen width, an SPA route change, and custom events with props', async () => {
    const { db } = stack
    const context = await browser.newContext({ userAgent: CHROME })
    const tab = await context.newPage()
    await tab.goto(`http://127.0.0.1:${site.port}/?utm_source=newsletter&utm_medium=email&utm_campaign=launch`, { referer: 'http://news.example.com/issue/42' })
    expect(await stored(1)).toBe(true)
    await tab.click('#spa')
    expect(await stored(2)).toBe(true)
    await tab.click('#next')
    await tab.waitForURL('**/about')
    expect(await stored(4)).toBe(true) // the page view, then the call queued before t.js ran
    await tab.evaluate(() => (globalThis as unknown as { sluice: (name: string, o: object) => void }).sluice('download', { props: { file: 'guide.pdf' } }))
    expect(await stored(5)).toBe(true)
    // Cookieless by default: nothing in localStorage, no cookie on the page or in the browser.
    expect(
      await tab.evaluate(() => [localStorage.length, sessionStorage.length, (globalThis as unknown as { document: { cookie: string } }).document.cookie]),
    ).toEqual([0, 0, ''])
    expect(await context.cookies()).toEqual([])
    await context.close()
    const rows = await db.sql`
      select event_type, path, referrer, source, channel, utm_source, utm_medium, utm_campaign, props, browser, os, device, user_id
      from events where site_id = 'browser-site' order by ts, event_type`
    const newsletter = {
      referrer: 'news.example.com',
      source: 'newsletter',
      channel: 'Email',
      utm_source: 'newsletter',
      utm_medium: 'email',
      utm_campaign: 'launch',
    }
    const noUtm = { utm_source: null, utm_medium: null, utm_campaign: null }
    const direct = { referrer: null, source: 'Direct / None', channel: 'Direct', ...noUtm }
    expect(rows.map(({ browser, os, device, user_id, ...r }) => r)).toEqual([
      { event_type: 'pageview', path: '/', ...newsletter, props: null },
      { event_type: 'pageview', path: '/pricing', referrer: 'news.example.com', source: 'news.example.com', channel: 'Referral', ...noUtm, props: null },
      { event_type: 'pageview', path: '/about', ...direct, props: null },
      { event_type: 'signup', path: '/about', ...direct, props: { plan: 'pro' } },
      { event_type: 'download', path: '/about', ...direct, props: { file: 'guide.pdf' } },
    ])
    for (const r of rows) expect([r.browser, r.os, r.device]).toEqual(['Chrome', 'Windows', 'Desktop'])
    expect(new Set(rows.map((x) => x.user_id)).size).toBe(1) // one visitor: the API's id for this IP and user agent today
    expect(rows[0]!.user_id).toMatch(/^[A-Za-z0-9_-]{22}$/)
  }, 60_000)

  test('with data-persist="true" the tracker keeps a random id in localStorage and sends it as user_id on every page view', async () => {
    const persisted = async (n: number) =>
      (await eventually(async () => {
        const rows = await stack.db.sql`select user_id from events where site_id = 'persist-site' order by ts`
        return rows.length === n ? rows.map((r) => r.user_id as string) : null
      })) ?? []
    const context = await browser.newContext({ userAgent: CHROME })
    const tab = await context.newPage()
    await tab.goto(`http://127.0.0.1:${site.port}/persist`)
    const first = await persisted(1)
    const kept = await tab.evaluate(() => localStorage.getItem('sluice_uid'))
    expect(kept).toMatch(/^[a-z0-9]{10,}$/)
    expect(first).toEqual([kept!])
    await tab.goto(`http://127.0.0.1:${site.port}/persist/again`)
    expect(await persisted(2)).toEqual([kept!, kept!])
    expect(await tab.evaluate(() => localStorage.getItem('sluice_uid'))).toBe(kept)
    await context.close()
  }, 60_000)

  test('the dashboard shows sources, pages, countries and devices as /v1/query does, and a click on a row filters the whole page', async () => {
    // Visitors from other places, as a site's own server would forward them.
    const visit = (user: string, ip: string, ua: string, path: string, more: Record<string, unknown> = {}) => ({
      site_id: 'browser-site',
      event_type: 'pageview',
      path,
      user_id: user,
      timestamp: new Date().toISOString(),
      ip,
      user_agent: ua,
      ...more,
    })
    const google = { referrer: 'https://www.google.com/' }
    const res = await fetch(`${stack.base}/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${FORWARD}`, 'content-type': 'application/json' },
      body: JSON.stringify([
        visit('u-us', '8.8.8.8', IPHONE, '/', google),
        visit('u-us', '8.8.8.8', IPHONE, '/pricing', google),
        visit('u-br', '200.160.2.3', IPHONE, '/', google),
        visit('u-de', '81.169.145.100', FIREFOX, '/', { referrer: 'https://news.ycombinator.com/item?id=1' }),
        visit('u-de', '81.169.145.100', FIREFOX, '/docs/getting-started'),
        visit('u-de2', '2a01:4f8::1', SAFARI, '/', { utm_source: 'newsletter', utm_medium: 'email', utm_campaign: 'launch' }),
        visit('u-jp', '133.242.0.1', CHROME, '/pricing'),
        visit('u-jp', '133.242.0.1', CHROME, '/pricing', { event_type: 'signup', props: { plan: 'team' } }),
      ]),
    })
    expect(res.status).toBe(202)
    expect(await stored(13)).toBe(true)

    const dash = await browser.newPage({ viewport: { width: 1100, height: 760 } })
    await dash.goto(`${stack.base}/dashboard?site=browser-site&period=day#token=${TOKEN}`)
    await loaded(dash)
    await expectPageMatches(dash, [])
    // Both APIs agree on the totals.
    const today = new Date().toISOString().slice(0, 10)
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)
    const stats = (await (
      await fetch(`${stack.base}/v1/stats?site_id=browser-site&from=${today}&to=${tomorrow}&granularity=hour`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      })
    ).json()) as { totals: { views: number; unique_users: number } }
    expect(stats.totals).toEqual({ views: 13, unique_users: 6 })
    expect(await cards(dash)).toEqual([6, 10, 13])
    expect((await panel(dash, 'sources')).map((r) => r[0])).toContain('newsletter')
    expect((await panel(dash, 'pages')).map((r) => r[0])).toEqual(expect.arrayContaining(['/', '/pricing', '/about', '/docs/getting-started']))
    expect(await dash.textContent('#p-countries .attr a')).toBe('IP Geolocation by DB-IP')
    await dash.click('#p-sources .tabs button[data-dim="utm_campaign"]')
    await loaded(dash)
    expect(await panel(dash, 'sources')).toEqual(await breakdown('utm_campaign', []))
    expect((await panel(dash, 'sources')).map((r) => r[0])).toContain('launch')
    await dash.click('#p-sources .tabs button[data-dim="source"]')
    await loaded(dash)
    await dash.screenshot({ path: join(DOCS, 'dashboard.png'), fullPage: true })

    // A click on a row filters everything, and the filter lives in the URL.
    await dash.click('#p-sources tr[data-value="newsletter"]')
    await loaded(dash)
    expect(new URL(dash.url()).searchParams.getAll('f')).toEqual(['source:newsletter'])
    expect(await dash.textContent('#filters .chip')).toContain('Source is newsletter')
    const bySource: Filter[] = [['is', 'source', ['newsletter']]]
    await expectPageMatches(dash, bySource)
    expect(await cards(dash)).toEqual([2, 2, 2])
    await dash.click('#p-devices tr[data-value="Desktop"]')
    await loaded(dash)
    const both: Filter[] = [...bySource, ['is', 'device', ['Desktop']]]
    await expectPageMatches(dash, both)
    expect(dash.url()).toContain('&f=source:newsletter&f=device:Desktop')

    // The URL alone restores the view; removing a chip removes its filter.
    const shared = await browser.newPage({ viewport: { width: 1100, height: 760 } })
    await shared.goto(`${dash.url()}#token=${TOKEN}`)
    await loaded(shared)
    expect(await shared.$$eval('#filters .chip', (chips) => chips.map((c) => c.firstChild!.textContent))).toEqual(['Source is newsletter', 'Device is Desktop'])
    await expectPageMatches(shared, both)
    await shared.click('#filters .chip[data-dim="source"] button')
    await loaded(shared)
    expect(new URL(shared.url()).searchParams.getAll('f')).toEqual(['device:Desktop'])
    await expectPageMatches(shared, [['is', 'device', ['Desktop']]])

    // Without the token, the page shows nothing but the error.
    const anon = await browser.newPage()
    await anon.goto(`${stack.base}/dashboard?site=browser-site`)
    await anon.click('form button')
    await anon.waitForSelector('#error:not(:empty)')
    expect(await anon.textContent('#error')).toContain('stats need a token')
    expect(await anon.textContent('#visitors')).toBe('–')
  }, 90_000)
})
