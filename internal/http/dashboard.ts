import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Hono } from 'hono'

/**
 * GET /dashboard: one page for a site owner. The page itself holds no data; it asks for the
 * stats token (from the #token= fragment, which never reaches a server, or a form field; kept
 * in sessionStorage) and reads /v1/query with it (cards with their change against the period
 * before, panels, and the chart in the site's time zone); Export downloads /v1/export. GET
 * /share/<site> is the same page for one site, read with a shared link's #link= secret.
 * Clicking a panel row filters the whole page; the filters live in the URL
 * (?site=s&period=7d&f=source:Google&f=country:DE, with a panel's toggle as &sources=channel).
 * A public site's page loads without a token. A panel the kept data cannot answer
 * (422) shows the API's message instead of numbers. Charts use uPlot,
 * served from the package; the page's script is dashboard-page.js, served as it is (its URL
 * carries a hash of its content, so a new version is never read from a stale cache).
 */
export function dashboardRoutes(app: Hono) {
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'))
  const js = readFileSync(join(uplot, 'uPlot.iife.min.js'))
  const css = readFileSync(join(uplot, 'uPlot.min.css'))
  const script = readFileSync(join(import.meta.dir, 'dashboard-page.js'))
  const version = createHash('sha256').update(script).digest('hex').slice(0, 12)
  const page = PAGE.replace('/assets/dashboard.js', `/assets/dashboard.js?v=${version}`)
  const cached = { 'Cache-Control': 'public, max-age=86400' }
  const javascript = 'application/javascript; charset=utf-8'
  app.get('/assets/uplot.js', (c) => c.body(js, 200, { 'Content-Type': javascript, ...cached }))
  app.get('/assets/dashboard.js', (c) => c.body(script, 200, { 'Content-Type': javascript, ...cached }))
  app.get('/assets/uplot.css', (c) => c.body(css, 200, { 'Content-Type': 'text/css; charset=utf-8', ...cached }))
  app.get('/dashboard', (c) => c.html(page))
  // A shared link: the same page for one site, read with the link's secret from the URL fragment.
  app.get('/share/:site', (c) => c.html(page, 200, { 'Referrer-Policy': 'no-referrer' }))
  app.get('/', (c) => c.redirect('/dashboard'))
}

const CSS = `<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:.8rem 1.5rem;font-weight:600}
main{max-width:1040px;margin:1.5rem auto;padding:0 1rem}
form{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin-bottom:.6rem}
label{display:flex;flex-direction:column;font-size:12px;color:#556}
input,select,button{font:inherit;padding:.35rem .5rem;border:1px solid #c8ccd4;border-radius:4px}
form button{background:#2f6fec;color:#fff;border-color:#2f6fec;cursor:pointer}
form:not(.custom) .custom{display:none}
#filters{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}
#filters:empty{display:none}#realtime{margin:0 0 .4rem auto;font-size:14px;color:#556;white-space:nowrap}
#realtime i{display:inline-block;width:.55rem;height:.55rem;border-radius:50%;background:#1aa179;margin-right:.4rem;animation:pulse 2s infinite}
#realtime b{color:#1d2430}@keyframes pulse{50%{opacity:.35}}@media (prefers-reduced-motion:reduce){#realtime i{animation:none}}
.chip{display:inline-flex;align-items:center;gap:.3rem;background:#e8f0fe;color:#1a3d8f;border-radius:14px;padding:.1rem .3rem .1rem .7rem;font-size:13px;max-width:100%;overflow-wrap:anywhere}
.chip button{border:0;background:none;color:inherit;cursor:pointer;padding:0 .3rem;font-size:15px;line-height:1;min-width:24px;min-height:24px}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:.6rem 0 1rem}.card{flex:1 1 0;min-width:6.5rem;background:#fff;border-radius:6px;padding:.8rem .9rem;box-shadow:0 1px 2px #0001;font-size:13px;color:#556}
.card b{display:block;font-size:24px;color:#1d2430;white-space:nowrap}.panel{background:#fff;border-radius:6px;padding:1rem;box-shadow:0 1px 2px #0001;margin-bottom:1rem;min-width:0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:0 1rem}@media(max-width:760px){.grid{grid-template-columns:1fr}}
.ph{display:flex;justify-content:space-between;align-items:baseline;flex-wrap:wrap;gap:.4rem;margin-bottom:.4rem}.ph h2{font-size:15px;margin:0}
.tabs button{border:0;background:none;color:#5c6370;padding:.2rem .35rem;min-height:24px;font-size:12px;cursor:pointer}.tabs button.on{color:#2f6fec;font-weight:600}
table{width:100%;border-collapse:collapse;table-layout:fixed}th{font-size:12px;font-weight:500;color:#5c6370;text-align:right;padding:.2rem .3rem;width:5.5rem}
th:first-child{text-align:left;width:auto}td{padding:.1rem .3rem;border-bottom:1px solid #f0f1f3;text-align:right;white-space:nowrap}
td.name{position:relative;text-align:left;overflow:hidden;text-overflow:ellipsis}
td.name i{position:absolute;left:0;top:3px;bottom:3px;background:#e8f0fe;border-radius:3px}tr.row:hover td.name i{background:#d3e2fd}
td.name button{position:relative;border:0;background:none;font:inherit;color:inherit;padding:.1rem .3rem;cursor:pointer;max-width:100%;overflow:hidden;text-overflow:ellipsis;text-align:left}
td.name button.none{color:#5c6370;font-style:italic}
@media(max-width:480px){th{width:3.9rem}td.name{white-space:normal}td.name button{white-space:normal;overflow-wrap:anywhere}}.note{font-size:13px;color:#667;margin:.4rem 0 0}.note:empty{display:none}
.warn{color:#7a4a00;background:#fff4de;border-radius:4px;padding:.5rem .7rem}.cards+.warn{margin:-.4rem 0 1rem}#why{margin:.6rem 0 0}
.attr{font-size:12px;margin:.5rem 0 0}.attr a{color:#667}
#error{color:#b00020;margin:.3rem 0}#error:empty{display:none}
.change{display:block;font-size:13px;color:#667;min-height:1.2em}.change.up{color:#1a7f4b}.change.down{color:#b3261e}
body.shared form label.own{display:none}#shared{display:none;margin:0 0 .6rem;color:#445}body.shared #shared{display:block}
#export{background:#fff;color:#2f6fec;cursor:pointer}
body[data-loaded=false] .card b,body[data-loaded=false] .panel table,body[data-loaded=false] #chart{opacity:.45;transition:opacity .2s .15s}
</style>`

const panel = (id: string, title: string, footer = '') =>
  `<section class="panel" id="p-${id}"><div class="ph"><h2>${title}</h2><span class="tabs"></span></div><table></table><p class="note"></p>${footer}</section>`

const CARDS = [
  ['visitors', 'Unique visitors'],
  ['visits', 'Visits'],
  ['pageviews', 'Pageviews'],
  ['views_per_visit', 'Views per visit'],
  ['bounce_rate', 'Bounce rate'],
  ['visit_duration', 'Visit duration'],
  ['events', 'Events'],
]

const HTML = `<header>Sluice</header>
<main>
<form id="query">
  <label class="own">Site<input name="site" required></label>
  <label>Period<select name="period"><option value="day">Today<option value="7d">Last 7 days<option value="30d" selected>Last 30 days<option value="month">This month<option value="12mo">Last 12 months<option value="year">This year<option value="all">All time<option value="custom">Custom range</select></label>
  <label class="custom">From<input name="from" type="date"></label>
  <label class="custom">To (inclusive)<input name="to" type="date"></label>
  <label class="own">Stats token<input id="token" type="password" autocomplete="off"></label>
  <button>Show</button>
  <button type="button" id="export" title="Every panel of this view as CSV files in a zip">Export</button>
  <span id="realtime" title="Visitors in the last 5 minutes"><i></i><b id="realtime-count">–</b> <span id="realtime-what">current visitors</span></span>
</form>
<p id="shared">A shared, read-only dashboard of <b id="shared-site"></b>.</p>
<p id="error" role="alert"></p>
<div id="filters" aria-label="Active filters"></div>
<p class="note warn" id="why"></p>
<div class="cards">${CARDS.map(([id, name]) => `<div class="card">${name}<b id="${id}">–</b><span class="change" id="${id}-change"></span></div>`).join('')}</div>
<p class="note" id="cards-note"></p>
<div class="panel"><div id="chart"></div><p class="note" id="chart-note"></p><p class="note" id="zone"></p></div>
<div class="grid">${panel('sources', 'Top sources')}${panel('pages', 'Pages')}
${panel('countries', 'Countries', '<p class="attr"><a href="https://db-ip.com">IP Geolocation by DB-IP</a></p>')}${panel('devices', 'Devices')}
${panel('goals', 'Goals')}</div>
</main>`

const PAGE = `<!doctype html><html lang="en"><meta charset="utf-8"><title>Sluice dashboard</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/uplot.css">
${CSS}
${HTML}
<script src="/assets/uplot.js"></script>
<script src="/assets/dashboard.js"></script>`
