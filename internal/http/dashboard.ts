import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Hono } from 'hono'

/**
 * GET /dashboard: one page for a site owner. The page itself holds no data; it asks for the
 * stats token (from the #token= fragment, which never reaches a server, or a form field; kept
 * in sessionStorage) and reads /v1/stats with it. Charts use uPlot, served from the package.
 */
export function dashboardRoutes(app: Hono) {
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'))
  const js = readFileSync(join(uplot, 'uPlot.iife.min.js'))
  const css = readFileSync(join(uplot, 'uPlot.min.css'))
  const cached = { 'Cache-Control': 'public, max-age=86400' }
  app.get('/assets/uplot.js', (c) => c.body(js, 200, { 'Content-Type': 'application/javascript; charset=utf-8', ...cached }))
  app.get('/assets/uplot.css', (c) => c.body(css, 200, { 'Content-Type': 'text/css; charset=utf-8', ...cached }))
  app.get('/dashboard', (c) => c.html(PAGE))
  app.get('/', (c) => c.redirect('/dashboard'))
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>Sluice dashboard</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="stylesheet" href="/assets/uplot.css">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:.8rem 1.5rem;font-weight:600}
main{max-width:1000px;margin:1.5rem auto;padding:0 1rem}
form{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin-bottom:1rem}
label{display:flex;flex-direction:column;font-size:12px;color:#556}
input,select,button{font:inherit;padding:.35rem .5rem;border:1px solid #c8ccd4;border-radius:4px}
button{background:#2f6fec;color:#fff;border-color:#2f6fec;cursor:pointer}
.cards{display:flex;gap:1rem;margin:1rem 0}.card{flex:1;background:#fff;border-radius:6px;padding:1rem;box-shadow:0 1px 2px #0001}
.card b{display:block;font-size:28px}.panel{background:#fff;border-radius:6px;padding:1rem;box-shadow:0 1px 2px #0001;margin-bottom:1rem}
table{width:100%;border-collapse:collapse}td{padding:.3rem;border-bottom:1px solid #eee}td:last-child{text-align:right}
#error{color:#b00020}
</style>
<header>Sluice</header>
<main>
<form id="query">
  <label>Site<input name="site" required></label>
  <label>From<input name="from" type="date" required></label>
  <label>To (exclusive)<input name="to" type="date" required></label>
  <label>Granularity<select name="granularity"><option>hour<option selected>day<option>month<option>year</select></label>
  <label>Stats token<input name="token" type="password" autocomplete="off"></label>
  <button>Show</button>
</form>
<p id="error" role="alert"></p>
<div class="cards"><div class="card">Total views<b id="views">–</b></div><div class="card">Unique users<b id="users">–</b></div></div>
<div class="panel"><div id="chart"></div></div>
<div class="panel"><b>Top paths</b><table id="paths"></table><p id="paths-note"></p></div>
</main>
<script src="/assets/uplot.js"></script>
<script>
const form = document.getElementById('query')
const params = new URLSearchParams(location.search)
const fragment = new URLSearchParams(location.hash.slice(1))
if (fragment.get('token')) { sessionStorage.setItem('sluice_token', fragment.get('token')); history.replaceState(null, '', location.pathname + location.search) }
const today = new Date(); const day = (d) => d.toISOString().slice(0, 10)
form.site.value = params.get('site') ?? ''
form.to.value = params.get('to') ?? day(new Date(today.getTime() + 86400000))
form.from.value = params.get('from') ?? day(new Date(today.getTime() - 29 * 86400000))
form.granularity.value = params.get('granularity') ?? 'day'
form.token.value = sessionStorage.getItem('sluice_token') ?? ''
let plot
async function show(e) {
  e?.preventDefault()
  const err = document.getElementById('error'); err.textContent = ''
  sessionStorage.setItem('sluice_token', form.token.value)
  const q = new URLSearchParams({ site_id: form.site.value, from: form.from.value, to: form.to.value, granularity: form.granularity.value, limit: '10' })
  history.replaceState(null, '', '?' + new URLSearchParams({ site: form.site.value, from: form.from.value, to: form.to.value, granularity: form.granularity.value }))
  const res = await fetch('/v1/stats?' + q, { headers: form.token.value ? { Authorization: 'Bearer ' + form.token.value } : {} })
  const body = await res.json()
  if (!res.ok) { err.textContent = body.error + (body.details ? ': ' + body.details.map((d) => d.message).join('; ') : ''); return }
  document.getElementById('views').textContent = body.totals.views.toLocaleString('en')
  document.getElementById('users').textContent = body.totals.unique_users.toLocaleString('en')
  const table = document.getElementById('paths'); table.replaceChildren()
  for (const p of body.top_paths) { const tr = table.insertRow(); tr.insertCell().textContent = p.path; tr.insertCell().textContent = p.views.toLocaleString('en') }
  document.getElementById('paths-note').textContent = body.top_paths_max_error ? 'Counts may be up to ' + body.top_paths_max_error + ' low (long tail trimmed).' : ''
  const data = [body.series.map((s) => Date.parse(s.bucket) / 1000), body.series.map((s) => s.views), body.series.map((s) => s.unique_users)]
  plot?.destroy()
  plot = new uPlot({ width: document.getElementById('chart').clientWidth, height: 260, series: [{}, { label: 'Views', stroke: '#2f6fec', width: 2 }, { label: 'Unique users', stroke: '#1aa179', width: 2 }], scales: { x: { time: true } } }, data, document.getElementById('chart'))
  document.body.dataset.loaded = 'true'
}
form.addEventListener('submit', show)
if (form.site.value && form.token.value) show()
</script>`
