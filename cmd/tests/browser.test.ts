import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { eventually, pipeline } from '../../internal/testkit/testkit.ts'

// A real headless Chromium (Debian's) loads a page on another origin that includes /t.js,
// navigates twice (once through history.pushState), and the page views must reach
// Postgres; then the dashboard must show what /v1/stats says.

const OUT = join(import.meta.dir, '..', '..', 'test-output')
const stack = pipeline({ STATS_TOKEN: 'browser-token' })
let site: ReturnType<typeof Bun.serve>
let browser: Browser

const page = (api: string, title: string) => `<!doctype html><meta charset="utf-8"><title>${title}</title>
<h1>${title}</h1>
<a id="spa" href="/pricing" onclick="history.pushState({}, '', '/pricing'); document.querySelector('h1').textContent = 'Pricing'; return false">Pricing (SPA)</a>
<a id="next" href="/about">About</a>
<script defer src="${api}/t.js" data-site="browser-site"></script>`

beforeAll(async () => {
  site = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (req) => new Response(page(stack.base, new URL(req.url).pathname === '/about' ? 'About' : 'Home'), { headers: { 'Content-Type': 'text/html' } }),
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
  mkdirSync(OUT, { recursive: true })
}, 60_000)
afterAll(async () => {
  await browser?.close()
  site?.stop(true)
})

describe('in a real browser', () => {
  test('the tracker sends page views, including an SPA route change, and the dashboard shows what /v1/stats says', async () => {
    const { db, base: apiBase } = stack
    const tab = await browser.newPage()
    await tab.goto(`http://127.0.0.1:${site.port}/`)
    await eventually(async () => (await db.sql`select 1 from events where site_id = 'browser-site'`).length === 1)
    await tab.click('#spa')
    await eventually(async () => (await db.sql`select 1 from events where site_id = 'browser-site'`).length === 2)
    await tab.click('#next')
    await tab.waitForURL('**/about')
    const arrived = await eventually(async () => (await db.sql`select 1 from events where site_id = 'browser-site'`).length === 3)
    expect(arrived).toBe(true)
    const rows = await db.sql`select path, user_id from events where site_id = 'browser-site' order by ts`
    expect(rows.map((x) => x.path)).toEqual(['/', '/pricing', '/about'])
    expect(new Set(rows.map((x) => x.user_id)).size).toBe(1) // one visitor
    expect(rows[0]!.user_id).toBeTruthy()

    const now = new Date()
    const from = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate())).toISOString().slice(0, 10)
    const to = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)).toISOString().slice(0, 10)
    const dash = await browser.newPage({ viewport: { width: 1100, height: 760 } })
    await dash.goto(`${apiBase}/dashboard?site=browser-site&from=${from}&to=${to}&granularity=hour#token=browser-token`)
    await dash.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 })
    const stats = (await (
      await fetch(`${apiBase}/v1/stats?site_id=browser-site&from=${from}&to=${to}&granularity=hour&limit=10`, {
        headers: { authorization: 'Bearer browser-token' },
      })
    ).json()) as { totals: { views: number; unique_users: number }; top_paths: { path: string; views: number }[] }
    expect(await dash.textContent('#views')).toBe(String(stats.totals.views))
    expect(await dash.textContent('#users')).toBe(String(stats.totals.unique_users))
    expect(stats.totals).toEqual({ views: 3, unique_users: 1 })
    const shownPaths = await dash.$$eval('#paths tr', (trs) => trs.map((tr) => [tr.children[0]!.textContent, Number(tr.children[1]!.textContent)]))
    expect(shownPaths).toEqual(stats.top_paths.map((p) => [p.path, p.views]))
    expect(await dash.$('#chart canvas')).not.toBeNull()
    await dash.screenshot({ path: join(OUT, 'dashboard.png'), fullPage: true })
    // Without the token, the page shows nothing but the error.
    const anon = await browser.newPage()
    await anon.goto(`${apiBase}/dashboard?site=browser-site`)
    await anon.click('button')
    await anon.waitForSelector('#error:not(:empty)')
    expect(await anon.textContent('#error')).toContain('stats need a token')
  }, 60_000)
})
