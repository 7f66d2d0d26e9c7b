import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { type Browser, chromium, type Page } from 'playwright-core'
import { eventually, pipeline, rollUpAll } from '../../internal/testkit/testkit.ts'

// A real headless Chromium (Debian's) loads a page on another origin that includes /t.js,
// arriving from a referrer with UTM tags, navigates twice (once through history.pushState)
// and sends custom events, queued before the script ran and after; they must reach Postgres
// with their dimensions. Then the dashboard must show what /v1/query says, also once a
// click on a row has filtered the page. The second test reads what the first sent. The
// third sends visits of its own, hours old so they are closed, and the dashboard must show
// their visit metrics, entry and exit pages, the goal's conversion rate and the realtime
// count as /v1/query does; it takes docs/dashboard.png. By default the tracker must leave
// nothing on the device (no localStorage, no cookie); with data-persist="true" it keeps its
// id there.

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

const page = (
  api: string,
  title: string,
  persist = false,
  siteId = persist ? 'persist-site' : 'browser-site',
) => `<!doctype html><meta charset="utf-8"><title>${title}</title>
<h1>${title}</h1>
<a id="spa" href="/pricing" onclick="history.pushState({}, '', '/pricing'); document.querySelector('h1').textContent = 'Pricing'; return false">Pricing (SPA)</a>
<a id="next" href="/about">About</a>
${title === 'About' ? `<script>${STUB}; sluice('signup', {props: {plan: 'pro'}})</script>` : ''}
<script defer src="${api}/t.js" data-site="${siteId}"${persist ? ' data-persist="true"' : ''}></script>`

beforeAll(async () => {
  site = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (req) => {
      const { pathname } = new URL(req.url)
      const siteId = pathname.startsWith('/fast') ? 'clock-site' : pathname.startsWith('/ads') ? 'ads-site' : undefined
      return new Response(page(stack.base, pathname === '/about' ? 'About' : 'Home', pathname.startsWith('/persist'), siteId), {
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

type QueryAnswer = { results: { dimensions: string[]; metrics: number[] }[]; perEvent?: boolean }
type Filter = [string, string, string[]]
/** /v1/query's answer: 200 with results, or 422 (the kept data cannot answer) with its message. */
async function ask(body: Record<string, unknown>): Promise<QueryAnswer | { refused: string }> {
  const answer = await askOnce(body)
  // As the dashboard does: what visits by how they came (visit:source) cannot answer is counted per page view.
  const visit = (d: string) => d.startsWith('visit:')
  const plain = (d: string) => d.replace(/^visit:/, '')
  const byVisit = [...((body.filters as Filter[] | undefined) ?? []).map((f) => f[1]), ...((body.dimensions as string[] | undefined) ?? [])].some(visit)
  if (!byVisit || !('refused' in answer) || !['visits_one_dimension', 'visits_whole_days', 'visits_not_recorded'].includes(answer.refused)) return answer
  const again = await askOnce({
    ...body,
    filters: ((body.filters as Filter[] | undefined) ?? []).map(([op, d, v]) => [op, plain(d), v]),
    ...(body.dimensions ? { dimensions: (body.dimensions as string[]).map(plain) } : {}),
    ...(body.order_by ? { order_by: (body.order_by as string[][]).map(([k, dir]) => [plain(k!), dir]) } : {}),
  })
  return 'refused' in again ? again : { ...again, perEvent: true }
}
async function askOnce(body: Record<string, unknown>): Promise<QueryAnswer | { refused: string }> {
  const res = await fetch(`${stack.base}/v1/query`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ site_id: 'browser-site', date_range: 'day', ...body }),
  })
  const json = (await res.json()) as Record<string, unknown>
  if (res.status === 422) return { refused: String(json.code) }
  expect(res.status, JSON.stringify(json)).toBe(200)
  return json as QueryAnswer
}
async function query(body: Record<string, unknown>): Promise<QueryAnswer> {
  const answer = await ask(body)
  if ('refused' in answer) throw new Error(`422: ${answer.refused}`)
  return answer
}
const BASE_METRICS = ['visitors', 'pageviews', 'events']
const VISIT_METRICS = ['visits', 'views_per_visit', 'bounce_rate', 'visit_duration']
const PAGE_VIEWS = ['pageview', 'page_view']
type Shown = unknown[][] | { refused: string }
/** A panel's rows as the dashboard asks for them (by visitors, ties by value; goals leave page views out), or the 422's message. */
async function breakdown(dim: string, filters: Filter[], more: Record<string, unknown> = {}, metrics = ['visitors', 'pageviews']): Promise<Shown> {
  const order_by = [
    ['visitors', 'desc'],
    [dim, 'asc'],
  ]
  const answer = await ask({ metrics, dimensions: [dim], filters, order_by, limit: 12, ...more })
  if ('refused' in answer) return answer
  return answer.results
    .filter((r) => dim !== 'event_type' || !PAGE_VIEWS.includes(r.dimensions[0]!))
    .slice(0, 10)
    .map((r) => [r.dimensions[0], ...r.metrics])
}
const goals = (filters: Filter[], more: Record<string, unknown> = {}) => breakdown('event_type', filters, more, ['visitors', 'events', 'conversion_rate'])

const number = (s: string | null) => Number(s?.replaceAll(',', ''))
const cards = async (dash: Page) => Promise.all(['#visitors', '#pageviews', '#events'].map(async (id) => number(await dash.textContent(id))))
/** A panel's rows, or the message it shows instead of them. */
async function panel(dash: Page, id: string): Promise<Shown> {
  // A refusal is shown in words; its code, which the test compares, rides on the note.
  const note = await dash.$eval(`#p-${id} .note`, (n) => (n.classList.contains('warn') ? (n as unknown as { dataset: { codes: string } }).dataset.codes : null))
  if (note !== null) return { refused: note }
  return dash.$$eval(`#p-${id} tbody tr`, (trs) =>
    trs.map((tr) => [tr.getAttribute('data-value'), ...[...tr.children].slice(1).map((td) => Number(td.textContent!.replace(/[,%]/g, '')))]),
  )
}
/** The cards' values as the page got them from /v1/query (each card shows it formatted); undefined where it got none. */
const cardValues = (dash: Page, ids: string[]) =>
  Promise.all(ids.map(async (id) => JSON.parse((await dash.getAttribute(`#${id}`, 'data-value')) ?? 'null') ?? undefined))
/** A panel's rows, which it must show. */
async function rows(dash: Page, id: string): Promise<unknown[][]> {
  const shown = await panel(dash, id)
  if (!Array.isArray(shown)) throw new Error(`#p-${id} shows ${shown.refused}`)
  return shown
}
const visitCards = (dash: Page) => cardValues(dash, VISIT_METRICS)
const loaded = (dash: Page) => dash.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 })

/**
 * The cards and every panel show what /v1/query answers under `filters` (`more` adds
 * site_id or date_range), or, where it answers 422, its message instead of numbers.
 */
async function expectPageMatches(dash: Page, filters: Filter[], more: Record<string, unknown> = {}) {
  expect(await dash.textContent('#error')).toBe('')
  const refused: string[] = []
  for (const metrics of [BASE_METRICS, VISIT_METRICS]) {
    const answer = await ask({ metrics, filters, ...more })
    if ('refused' in answer) refused.push(answer.refused)
    const expected = 'refused' in answer ? metrics.map(() => undefined) : answer.results[0]!.metrics
    // Without visits the page shows no rate, views per visit or duration (the API's 0 is not 0 %).
    const noVisits = metrics === VISIT_METRICS && expected[0] === 0
    expect(await cardValues(dash, metrics)).toEqual(noVisits ? expected.map((x, i) => (i === 0 ? x : undefined)) : expected)
  }
  expect((await dash.getAttribute('#cards-note', 'data-codes')) ?? '').toBe([...new Set(refused)].join(' '))
  const pages = (await dash.getAttribute('#p-pages .tabs button.on', 'data-dim')) ?? 'path'
  const sources = (await dash.getAttribute('#p-sources .tabs button.on', 'data-dim')) ?? 'visit:source'
  for (const [id, dim, metrics] of [
    ['sources', sources, undefined],
    ['pages', pages, pages === 'path' ? undefined : ['visitors', 'visits']],
    ['countries', 'country', undefined],
    ['devices', 'device', undefined],
  ] as const)
    expect(await panel(dash, id)).toEqual(await breakdown(dim, filters, more, metrics && [...metrics]))
  expect(await panel(dash, 'goals')).toEqual(await goals(filters, more))
}
/** ... and the chart is drawn, with nothing refused; perEvent: counted per page view under a filter on a visit's source, as its note says. */
async function expectChart(dash: Page, perEvent = false) {
  expect(await dash.$('#chart canvas')).not.toBeNull()
  expect(await dash.textContent('#chart-note')).toBe(
    perEvent ? "Per page view: only the pages that came with the filter's source, not the later pages of those visits." : '',
  )
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

  test('a page view from a browser whose clock runs 10 minutes fast is stored at the time received, its long path and tags cut whole, a NUL in a tag dropped', async () => {
    const context = await browser.newContext({ userAgent: CHROME })
    const tab = await context.newPage()
    await tab.clock.setSystemTime(new Date(Date.now() + 10 * 60_000))
    const campaign = `${'a'.repeat(255)}😀`
    const before = Date.now()
    await tab.goto(`http://127.0.0.1:${site.port}/fast/${'p'.repeat(2100)}?utm_campaign=${encodeURIComponent(campaign)}&utm_source=x&utm_medium=e%00mail`)
    const row = await eventually(
      async () => (await stack.db.sql`select path, utm_campaign, utm_medium, ts from events where site_id = 'clock-site'`)[0] ?? null,
    )
    await context.close()
    expect(row).not.toBeNull()
    expect(row!.path).toBe(`/fast/${'p'.repeat(2042)}`)
    expect(row!.utm_campaign).toBe('a'.repeat(255))
    // A NUL would make the API refuse the whole page view (Postgres cannot store one): the tracker drops it.
    expect(row!.utm_medium).toBe('email')
    const ts = (row!.ts as Date).getTime()
    expect(ts).toBeGreaterThanOrEqual(before - 1000)
    expect(ts).toBeLessThan(Date.now() + 1000)
  }, 60_000)

  test('a landing from an auto-tagged Google Ads click counts as Paid Search from Google, and the click ID itself never leaves the page', async () => {
    const context = await browser.newContext({ userAgent: CHROME })
    const tab = await context.newPage()
    const sent: string[] = []
    tab.on('request', (r) => {
      if (r.url().endsWith('/event')) sent.push(r.postData() ?? '')
    })
    await tab.goto(`http://127.0.0.1:${site.port}/ads/landing?gclid=Cj0KCQiAsecret&x=1`, { referer: 'https://www.google.com/' })
    const row = await eventually(
      async () => (await stack.db.sql`select path, referrer, source, channel, utm_medium from events where site_id = 'ads-site'`)[0] ?? null,
    )
    await context.close()
    expect(row).toEqual({ path: '/ads/landing', referrer: 'google.com', source: 'Google', channel: 'Paid Search', utm_medium: null })
    expect(sent).toHaveLength(1)
    expect(JSON.parse(sent[0]!)).toMatchObject({ click_id_param: 'gclid' })
    expect(sent[0]).not.toContain('Cj0KCQiAsecret')
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
    // Sources count each visit whole, once the rollup (every 30 s) has merged its events.
    await rollUpAll(stack)

    const dash = await browser.newPage({ viewport: { width: 1100, height: 760 } })
    await dash.goto(`${stack.base}/dashboard?site=browser-site&period=day#token=${TOKEN}`)
    await loaded(dash)
    await expectPageMatches(dash, [])
    await expectChart(dash)
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
    expect((await rows(dash, 'sources')).map((r) => r[0])).toContain('newsletter')
    expect((await rows(dash, 'pages')).map((r) => r[0])).toEqual(expect.arrayContaining(['/', '/pricing', '/about', '/docs/getting-started']))
    expect(await dash.textContent('#p-countries .attr a')).toBe('IP Geolocation by DB-IP')
    await dash.click('#p-sources .tabs button[data-dim="visit:utm_campaign"]')
    await loaded(dash)
    expect(await panel(dash, 'sources')).toEqual(await breakdown('visit:utm_campaign', []))
    expect((await rows(dash, 'sources')).map((r) => r[0])).toContain('launch')
    // The tab chosen is in the URL, so a reload (or the link) shows the same panel.
    expect(new URL(dash.url()).searchParams.get('sources')).toBe('visit:utm_campaign')
    const reloaded = await browser.newPage({ viewport: { width: 1100, height: 760 } })
    await reloaded.goto(`${dash.url()}#token=${TOKEN}`)
    await loaded(reloaded)
    expect(await reloaded.getAttribute('#p-sources .tabs button.on', 'data-dim')).toBe('visit:utm_campaign')
    expect(await panel(reloaded, 'sources')).toEqual(await breakdown('visit:utm_campaign', []))
    await reloaded.close()
    await dash.click('#p-sources .tabs button[data-dim="visit:source"]')
    await loaded(dash)
    expect(new URL(dash.url()).searchParams.has('sources')).toBe(false)

    // A click on a row filters everything, and the filter lives in the URL: the visits that came
    // from the newsletter, with every page they viewed (per event, only their first page carried
    // its tags). Today's chart is by the hour, which visits are not: counted per page view.
    await dash.click('#p-sources tr[data-value="newsletter"]')
    await loaded(dash)
    expect(new URL(dash.url()).searchParams.getAll('f')).toEqual(['visit:source:newsletter'])
    expect(await dash.textContent('#filters .chip')).toContain('Source of the visit is newsletter')
    const bySource: Filter[] = [['is', 'visit:source', ['newsletter']]]
    await expectPageMatches(dash, bySource)
    await expectChart(dash, true)
    const [visitors, pageviews] = await cards(dash)
    const landings = (await query({ metrics: ['pageviews'], filters: [['is', 'source', ['newsletter']]] })).results[0]!.metrics[0]!
    expect({ visitors, moreThanLandings: pageviews! > landings }).toEqual({ visitors: 2, moreThanLandings: true })
    // Pages under it are counted per page view, and say so.
    expect(await dash.getAttribute('#p-pages .note', 'data-per-event')).toBe('filter')
    await dash.click('#p-devices tr[data-value="Desktop"]')
    await loaded(dash)
    const both: Filter[] = [...bySource, ['is', 'device', ['Desktop']]]
    await expectPageMatches(dash, both)
    await expectChart(dash, true)
    expect(dash.url()).toContain('&f=visit:source:newsletter&f=device:Desktop')

    // Where the period before is from before the upgrade that kept visitors by source, the cards
    // leave out the comparison and still count the visits, as the panels do.
    await stack.db.sql`update rollup_state set visit_sketches_since = now() - interval '8 days'`
    try {
      const week = await browser.newPage({ viewport: { width: 1100, height: 760 } })
      await week.goto(`${stack.base}/dashboard?site=browser-site&period=7d&f=visit:source:newsletter#token=${TOKEN}`)
      await loaded(week)
      expect(await week.getAttribute('#cards-note', 'data-per-event')).toBeNull()
      const byVisit = await askOnce({ date_range: '7d', metrics: BASE_METRICS, filters: bySource })
      expect('results' in byVisit && [byVisit.results[0]!.metrics, await cards(week)]).toEqual([
        [2, 4, 6],
        [2, 4, 6],
      ])
      await week.close()
    } finally {
      await stack.db.sql`update rollup_state set visit_sketches_since = null`
    }

    // The URL alone restores the view; removing a chip removes its filter.
    const shared = await browser.newPage({ viewport: { width: 1100, height: 760 } })
    // A filter the page does not know (visit: takes only how the visit came) is left out, not sent.
    await shared.goto(`${dash.url()}&f=visit:country:DE#token=${TOKEN}`)
    await loaded(shared)
    expect(await shared.$$eval('#filters .chip', (chips) => chips.map((c) => c.firstChild!.textContent))).toEqual([
      'Source of the visit is newsletter',
      'Device is Desktop',
    ])
    // Current visitors come from raw events: per page view under it, as the tooltip says.
    expect(await eventually(async () => (await shared.getAttribute('#realtime', 'title'))?.includes('Per page view') === true, { timeoutMs: 5_000 })).toBe(true)
    await expectPageMatches(shared, both)
    await expectChart(shared, true)
    await shared.click('#filters .chip[data-dim="visit:source"] button')
    await loaded(shared)
    expect(new URL(shared.url()).searchParams.getAll('f')).toEqual(['device:Desktop'])
    await expectPageMatches(shared, [['is', 'device', ['Desktop']]])
    // Under a filter on another dimension, sources are counted per page view, and the panel says so.
    expect(await shared.getAttribute('#p-sources .note', 'data-per-event')).toBe('breakdown')
    await expectChart(shared)

    // Without the token, the page shows nothing but the error.
    const anon = await browser.newPage()
    await anon.goto(`${stack.base}/dashboard?site=browser-site`)
    await anon.click('form button')
    await anon.waitForSelector('#error:not(:empty)')
    expect(await anon.textContent('#error')).toContain('stats need a token')
    expect(await anon.textContent('#visitors')).toBe('–')
  }, 90_000)

  test('the dashboard shows visits, bounce rate, visit duration, entry and exit pages, a goal and realtime visitors as /v1/query does', async () => {
    // Five visitors, six visits, starting three hours ago (a visit ends 30 minutes of event
    // time after its last event). Minutes from the start, per visitor:
    //   a: / 0, /docs 1, /pricing 3, signup 4 (on /pricing)      then /blog/hello 120 (a bounce)
    //   b: / 10 (a bounce)       c: /pricing 20, /docs 22
    //   d: /blog/hello 30, /pricing 31, signup 33 (on /pricing)   e: /docs 40 (a bounce)
    const start = Date.now() - 3 * 3_600_000
    const ev = (user: string, minute: number, path: string, more: Record<string, unknown> = {}) => ({
      site_id: 'visits-site',
      event_type: 'pageview',
      path,
      user_id: user,
      timestamp: new Date(start + minute * 60_000).toISOString(),
      ...more,
    })
    const who = {
      a: { ip: '8.8.8.8', user_agent: IPHONE },
      b: { ip: '81.169.145.100', user_agent: FIREFOX },
      c: { ip: '133.242.0.1', user_agent: CHROME },
      d: { ip: '200.160.2.3', user_agent: SAFARI },
      e: { ip: '8.8.4.4', user_agent: CHROME },
    }
    const google = { referrer: 'https://www.google.com/' }
    const signup = { event_type: 'signup' }
    const send = async (events: object[]) => {
      const res = await fetch(`${stack.base}/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${FORWARD}`, 'content-type': 'application/json' },
        body: JSON.stringify(events),
      })
      expect(res.status).toBe(202)
    }
    await send([
      ev('u-a', 0, '/', { ...who.a, ...google }),
      ev('u-a', 1, '/docs', who.a),
      ev('u-a', 3, '/pricing', who.a),
      ev('u-a', 4, '/pricing', { ...who.a, ...signup }),
      ev('u-a', 120, '/blog/hello', { ...who.a, ...google }),
      ev('u-b', 10, '/', { ...who.b, referrer: 'https://news.ycombinator.com/item?id=1' }),
      ev('u-c', 20, '/pricing', who.c),
      ev('u-c', 22, '/docs', who.c),
      ev('u-d', 30, '/blog/hello', { ...who.d, utm_source: 'newsletter', utm_medium: 'email', utm_campaign: 'launch' }),
      ev('u-d', 31, '/pricing', who.d),
      ev('u-d', 33, '/pricing', { ...who.d, ...signup }),
      ev('u-e', 40, '/docs', { ...who.e, ...google }),
    ])
    const count = async () => Number((await stack.db.sql`select count(*)::int as n from events where site_id = 'visits-site'`)[0]!.n)
    expect(await eventually(async () => (await count()) === 12)).toBe(true)
    // The rollup merges events into visits, then closes every visit into the visit rollups.
    await rollUpAll(stack)
    expect((await stack.db.sql`select count(*)::int as n from visits_open where site_id = 'visits-site'`)[0]!.n).toBe(0)

    const site = { site_id: 'visits-site', date_range: '7d' }
    const all = (await query({ ...site, metrics: ['visitors', 'pageviews', 'events', ...VISIT_METRICS] })).results[0]!.metrics
    // 6 visits, 3 of them bounces; (240 + 0 + 0 + 120 + 180 + 0) / 6 = 90 s; 10 page views / 6 visits.
    expect(all).toEqual([5, 10, 12, 6, 1.67, 50, 90])

    const dash = await browser.newPage({ viewport: { width: 1100, height: 760 } })
    await dash.goto(`${stack.base}/dashboard?site=visits-site&period=7d#token=${TOKEN}`)
    await loaded(dash)
    await expectPageMatches(dash, [], site)
    await expectChart(dash)
    expect(await Promise.all(['#visits', '#views_per_visit', '#bounce_rate', '#visit_duration'].map((id) => dash.textContent(id)))).toEqual([
      '6',
      '1.67',
      '50.0%',
      '1:30',
    ])
    // The goal: 2 of the 5 visitors signed up.
    expect(await panel(dash, 'goals')).toEqual([['signup', 2, 2, 40]])
    expect(await dash.textContent('#p-goals tbody td:last-child')).toBe('40.00%')
    // Entry and exit pages, by visitors then visits.
    await dash.click('#p-pages .tabs button[data-dim="entry_page"]')
    await loaded(dash)
    expect(await panel(dash, 'pages')).toEqual(await breakdown('entry_page', [], site, ['visitors', 'visits']))
    expect((await rows(dash, 'pages')).map((r) => [r[0], r[2]])).toEqual([
      ['/', 2],
      ['/blog/hello', 2],
      ['/docs', 1],
      ['/pricing', 1],
    ])
    await dash.click('#p-pages .tabs button[data-dim="exit_page"]')
    await loaded(dash)
    expect(await panel(dash, 'pages')).toEqual(await breakdown('exit_page', [], site, ['visitors', 'visits']))
    expect((await rows(dash, 'pages')).map((r) => [r[0], r[2]])).toEqual([
      ['/docs', 2],
      ['/pricing', 2],
      ['/', 1],
      ['/blog/hello', 1],
    ])
    await expectPageMatches(dash, [], site)
    await expectChart(dash)

    // A click on an entry page filters the whole page: a's first visit and b's bounce.
    await dash.click('#p-pages .tabs button[data-dim="entry_page"]')
    await loaded(dash)
    await dash.click('#p-pages tr[data-value="/"]')
    await loaded(dash)
    expect(new URL(dash.url()).searchParams.getAll('f')).toEqual(['entry_page:/'])
    expect(await dash.textContent('#filters .chip')).toContain('Entry page is /')
    await expectPageMatches(dash, [['is', 'entry_page', ['/']]], site)
    expect(await visitCards(dash)).toEqual([2, 2, 50, 120])
    await dash.click('#filters .chip button')
    await loaded(dash)
    await dash.click('#p-pages .tabs button[data-dim="path"]')
    await loaded(dash)

    // Sources count each visit whole: a's later pages are Google's, not Direct / None, and the
    // visitors add up to the card's. A click counts the visits from Google: a's two and e's.
    expect(await rows(dash, 'sources')).toEqual([
      ['Google', 2, 5],
      ['Direct / None', 1, 2],
      ['Hacker News', 1, 1],
      ['newsletter', 1, 2],
    ])
    await dash.click('#p-sources tr[data-value="Google"]')
    await loaded(dash)
    await expectPageMatches(dash, [['is', 'visit:source', ['Google']]], site)
    await expectChart(dash)
    expect(await cards(dash)).toEqual([2, 5, 6])
    expect(await visitCards(dash)).toEqual([3, 1.67, 66.7, 80])
    await dash.click('#filters .chip button')
    await loaded(dash)

    // Export downloads this view's zip, and the button comes back once it is done.
    const [download] = await Promise.all([dash.waitForEvent('download'), dash.click('#export')])
    expect(download.suggestedFilename()).toEndWith('.zip')
    expect(await dash.textContent('#export')).toBe('Export')
    expect(await dash.isEnabled('#export')).toBe(true)

    // Realtime: nobody in the last 5 minutes, then one more page view counts within a refresh (10 s).
    const realtime = async () => (await query({ site_id: 'visits-site', date_range: 'realtime', metrics: ['visitors'] })).results[0]!.metrics[0]
    const shown = async () => Number(await dash.getAttribute('#realtime-count', 'data-value'))
    expect(await realtime()).toBe(0)
    expect(await shown()).toBe(0)
    await send([{ ...ev('u-now', 0, '/pricing', { ...who.c, ...google }), timestamp: new Date().toISOString() }])
    expect(await eventually(async () => (await realtime()) === 1)).toBe(true)
    expect(await eventually(async () => (await shown()) === 1, { timeoutMs: 20_000, intervalMs: 200 })).toBe(true)
    expect(await dash.textContent('#realtime')).toBe('1 current visitor')
    await dash.screenshot({ path: join(DOCS, 'dashboard.png'), fullPage: true })

    // While the tab is hidden the count is not refreshed; shown again, it is at once.
    const asked: number[] = []
    dash.on('request', (r) => {
      if (r.url().endsWith('/v1/query') && r.postData()?.includes('"realtime"')) asked.push(Date.now())
    })
    const visibility = (hidden: boolean) =>
      dash.evaluate(
        `Object.defineProperty(document, 'hidden', { configurable: true, get: () => ${hidden} }); document.dispatchEvent(new Event('visibilitychange'))`,
      )
    await visibility(true)
    await Bun.sleep(11_000)
    expect(asked).toEqual([])
    await visibility(false)
    expect(await eventually(async () => asked.length === 1, { timeoutMs: 2_000 })).toBe(true)

    // Once raw events may be gone, a filter on a source leaves pages (two dimensions, not a
    // kept pair) unanswerable for the week: the panel says so in words, not in the API's terms.
    await stack.db.sql`update rollup_state set raw_dropped_before = now()`
    const filtered = new URL(dash.url())
    filtered.searchParams.append('f', 'source:Google')
    await dash.goto(filtered.href)
    await loaded(dash)
    expect(await dash.getAttribute('#p-pages .note', 'data-codes')).toBe('needs_raw_events')
    expect(await dash.textContent('#p-pages .note')).toStartWith('Not kept for this range')
    // The whole reason once, above the cards, not in every panel.
    expect(await dash.textContent('#why')).toStartWith('Not kept for this range under the filter Source is Google: a breakdown under a filter')
    expect((await dash.textContent('#p-pages .note'))!.length).toBeLessThan(100)
    expect(await dash.getAttribute('#p-pages .note', 'title')).toContain('RAW_RETENTION_HOURS')
    expect(await rows(dash, 'countries')).not.toEqual([]) // source with country is a kept pair: still answered
  }, 240_000)
})
