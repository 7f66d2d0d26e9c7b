import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { type Browser, chromium } from 'playwright-core'
import { eventually, pipeline, rollUpAll } from '../../internal/testkit/testkit.ts'

// A shared link opened in a fresh browser that holds no token: it shows one site's
// dashboard in the site's time zone, with each card's change against the period before,
// exactly as /v1/query answers; once the link is revoked, it shows nothing but why.

const DOCS = join(import.meta.dir, '..', '..', 'docs')
const ADMIN = 'shared-admin'
const FORWARD = 'shared-forward'
const SITE = 'shared-site'
const TZ = 'America/New_York'
const stack = pipeline({ STATS_TOKEN: 'shared-stats', ADMIN_TOKEN: ADMIN, INGEST_FORWARD_TOKEN: FORWARD, REGISTRY_REFRESH_MS: '300' })
const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
let browser: Browser

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}, 60_000)
afterAll(async () => {
  await browser?.close()
}, 30_000)

const admin = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${stack.base}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  })
  expect(res.status).toBeLessThan(300)
  return (await res.json()) as Record<string, string>
}
type Answer = { results: { dimensions: string[]; metrics: number[]; comparison?: { change: (number | null)[] } }[]; meta: { timezone: string } }
const query = async (body: Record<string, unknown>): Promise<Answer> => {
  const res = await fetch(`${stack.base}/v1/query`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ site_id: SITE, date_range: '7d', ...body }),
  })
  expect(res.status).toBe(200)
  return (await res.json()) as Answer
}

describe('a shared link in a fresh browser', () => {
  test('shows its site in the site time zone with the change against the previous period, and nothing once revoked', async () => {
    await admin('POST', '/v1/admin/sites', { site_id: SITE, timezone: TZ })
    // Visits over the last fortnight, more of them this week than the week before.
    const now = Date.now()
    const events = Array.from({ length: 40 }, (_, i) => ({
      site_id: SITE,
      event_type: 'pageview',
      path: ['/', '/pricing', '/docs'][i % 3],
      user_id: `v${i % (i < 25 ? 17 : 9)}`,
      timestamp: new Date(now - (i < 25 ? (i * 6 + 1) * 3_600_000 : (8 * 24 + (i - 25) * 9) * 3_600_000)).toISOString(),
      referrer: i % 2 ? 'https://www.google.com/' : undefined,
      ip: '8.8.8.8',
      user_agent: i % 4 ? CHROME : IPHONE,
    }))
    const sent = await fetch(`${stack.base}/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${FORWARD}`, 'content-type': 'application/json' },
      body: JSON.stringify(events),
    })
    expect(sent.status).toBe(202)
    expect(await eventually(async () => Number((await stack.db.sql`select count(*)::int as n from events where site_id = ${SITE}`)[0]!.n) === 40)).toBe(true)
    // The rollup merges the events into visits and closes them.
    await rollUpAll(stack)
    const link = await admin('POST', '/v1/admin/tokens', { kind: 'link', site_id: SITE, name: 'for the client' })
    expect(link.path).toBe(`/share/${SITE}#link=${link.token}`)
    await Bun.sleep(800) // every API process loads the new link within REGISTRY_REFRESH_MS

    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } })
    const page = await context.newPage()
    await page.goto(`${stack.base}/share/${SITE}?period=7d#link=${link.token}`)
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 })
    expect(await page.textContent('#error')).toBe('')
    expect(await page.isVisible('#token')).toBe(false)
    expect(await page.isVisible('input[name="site"]')).toBe(false)
    expect(await page.textContent('#shared')).toContain(SITE)
    expect(page.url()).not.toContain(link.token) // the secret leaves the address bar
    // That address, copied and opened elsewhere, says it needs the full link.
    const copied = await (await browser.newContext()).newPage()
    await copied.goto(page.url())
    expect(await copied.textContent('#error')).toContain('opens only from the full link')
    await copied.context().close()

    const expected = await query({ metrics: ['visitors', 'pageviews', 'events'], include: { comparisons: { mode: 'previous_period' } } })
    expect(expected.meta.timezone).toBe(TZ)
    const [totals] = expected.results
    const cards = await Promise.all(['visitors', 'pageviews', 'events'].map(async (id) => Number((await page.textContent(`#${id}`))!.replaceAll(',', ''))))
    expect(cards).toEqual(totals!.metrics)
    for (const [i, id] of ['visitors', 'pageviews', 'events'].entries()) {
      const change = totals!.comparison!.change[i]!
      expect(change).not.toBeNull()
      expect(await page.textContent(`#${id}-change`)).toBe(
        `${change > 0 ? '↑ ' : change < 0 ? '↓ ' : ''}${Math.abs(change).toLocaleString('en')} % vs the period before`,
      )
    }
    // The tooltip names the compared days in the site's calendar, its last day included.
    const day = (ms: number) => new Intl.DateTimeFormat('en-CA', { timeZone: TZ }).format(new Date(ms))
    const [was, until] = (expected.meta as unknown as { comparison: { date_range: [string, string] } }).comparison.date_range.map((x) => Date.parse(x))
    expect(await page.getAttribute('#visitors-change', 'title')).toBe(`compared with ${day(was! + 3_599_999)} – ${day(until! - 1)}`)
    // The visit cards (their own query) get their change the same way.
    const visits = ['visits', 'views_per_visit', 'bounce_rate', 'visit_duration']
    const [visitTotals] = (await query({ metrics: visits, include: { comparisons: { mode: 'previous_period' } } })).results
    for (const [i, id] of visits.entries()) {
      expect(JSON.parse((await page.getAttribute(`#${id}`, 'data-value')) ?? 'undefined')).toEqual(visitTotals!.metrics[i])
      const change = visitTotals!.comparison!.change[i]!
      const text =
        visitTotals!.metrics[i] === null || (visitTotals!.metrics[i] === 0 && change === 0 && id !== 'bounce_rate')
          ? ''
          : change === null
            ? 'new since the period before'
            : `${change > 0 ? '↑ ' : change < 0 ? '↓ ' : ''}${Math.abs(change).toLocaleString('en')}${id === 'bounce_rate' ? ' pts' : ' %'} vs the period before`
      expect(await page.textContent(`#${id}-change`)).toBe(text)
      // A bounce rate that rises is shown as bad news.
      if (id === 'bounce_rate' && change !== null && change !== 0) {
        expect(await page.getAttribute(`#${id}-change`, 'class')).toBe(`change ${change > 0 ? 'down' : 'up'}`)
      }
    }
    expect(await page.textContent('#zone')).toBe(`Days in ${TZ}.`)
    // The visit cards are in UTC days, the others in the site's: the page says so.
    expect(await page.textContent('#cards-note')).toContain(`counted in UTC days; the other cards in ${TZ} days`)
    expect(await page.getAttribute('#realtime-count', 'data-value')).toBe('0') // the realtime count reads with the link too
    const pages = await page.$$eval('#p-pages tbody tr', (trs) =>
      trs.map((tr) => [tr.getAttribute('data-value'), ...[...tr.children].slice(1).map((td) => Number(td.textContent))]),
    )
    const byPath = await query({
      metrics: ['visitors', 'pageviews'],
      dimensions: ['path'],
      order_by: [
        ['visitors', 'desc'],
        ['path', 'asc'],
      ],
      limit: 10,
    })
    expect(pages).toEqual(byPath.results.map((r) => [r.dimensions[0], ...r.metrics]))
    await page.screenshot({ path: join(DOCS, 'dashboard-shared.png'), fullPage: true })

    // Revoked: the same link, in another fresh browser, shows nothing but why.
    await admin('DELETE', `/v1/admin/tokens/${link.id}`)
    await Bun.sleep(800)
    const after = await (await browser.newContext()).newPage()
    await after.goto(`${stack.base}/share/${SITE}?period=7d#link=${link.token}`)
    await after.waitForSelector('#error:not(:empty)', { timeout: 15_000 })
    expect(await after.textContent('#error')).toContain('This shared link is not valid')
    expect(await after.textContent('#visitors')).toBe('–')
    await context.close()
  }, 240_000)

  test("a public site's dashboard loads without a token, and a private site's says in plain words that it needs one", async () => {
    await admin('POST', '/v1/admin/sites', { site_id: 'public-site', public: true, timezone: 'Asia/Tokyo' })
    await admin('POST', '/v1/admin/sites', { site_id: 'private-site' })
    const sent = await fetch(`${stack.base}/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ site_id: 'public-site', event_type: 'pageview', path: '/', user_id: 'p1' }),
    })
    expect(sent.status).toBe(202)
    expect(await eventually(async () => Number((await stack.db.sql`select count(*)::int as n from events where site_id = 'public-site'`)[0]!.n) === 1)).toBe(
      true,
    )
    // The API loads the new sites within REGISTRY_REFRESH_MS: until then the public one needs a token.
    const open = async () =>
      (
        await fetch(`${stack.base}/v1/query`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ site_id: 'public-site', date_range: 'day', metrics: ['visitors'] }),
        })
      ).status === 200
    expect(await eventually(open)).toBe(true)
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } })
    const page = await context.newPage()
    await page.goto(`${stack.base}/dashboard?site=public-site&period=day`)
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 })
    expect(await page.textContent('#error')).toBe('')
    expect(await page.getAttribute('#pageviews', 'data-value')).toBe('1')
    expect(await page.getAttribute('#realtime-count', 'data-value')).toBe('1')
    // Once raw events of the range are gone, a panel by a dimension is counted in UTC days
    // while the chart keeps the site's: the panel says so.
    await rollUpAll(stack)
    await stack.db.sql`update rollup_state set raw_dropped_before = now()`
    try {
      await page.goto(`${stack.base}/dashboard?site=public-site&period=7d`)
      await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 })
      expect(await page.textContent('#zone')).toBe('Days in Asia/Tokyo.')
      expect(await page.textContent('#p-countries .note')).toBe('Counted in UTC days; the chart and the cards in Asia/Tokyo days.')
    } finally {
      await stack.db.sql`update rollup_state set raw_dropped_before = null`
    }
    const asked: string[] = []
    page.on('request', (req) => {
      if (req.url().includes('/v1/')) asked.push(req.url())
    })
    await page.goto(`${stack.base}/dashboard?site=private-site&period=day`)
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 })
    expect(await page.textContent('#error')).toBe("This site's stats need a token: enter its stats token.")
    expect(asked).toHaveLength(1) // one question, not one per panel and card
    await context.close()
  }, 60_000)
})
