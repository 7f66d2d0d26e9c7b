// The dashboard page's script, served at /assets/dashboard.js (see dashboard.ts): plain
// browser JavaScript, no build step.
const $ = (id) => document.getElementById(id)
const form = $('query')
const fmt = (n) => Number(n).toLocaleString('en')
const fixed =
  (digits, unit = '') =>
  (n) =>
    n == null ? '–' : `${Number(n).toFixed(digits)}${unit}`
// Seconds as m:ss (minutes may pass 59).
const duration = (n) => (n == null ? '–' : `${Math.floor(Math.round(n) / 60)}:${String(Math.round(n) % 60).padStart(2, '0')}`)
// How each metric reads: counts with thousands separators, rates as /v1/query rounds them.
const FORMATS = { bounce_rate: fixed(1, '%'), conversion_rate: fixed(2, '%'), views_per_visit: fixed(2), visit_duration: duration }
const show = (metric, n) => (FORMATS[metric] ?? fmt)(n)
const NONE = '(none)'
const LABELS = {
  source: 'Source',
  channel: 'Channel',
  utm_source: 'UTM source',
  utm_medium: 'UTM medium',
  utm_campaign: 'UTM campaign',
  utm_content: 'UTM content',
  utm_term: 'UTM term',
  referrer: 'Referrer',
  path: 'Page',
  entry_page: 'Entry page',
  exit_page: 'Exit page',
  country: 'Country',
  device: 'Device',
  browser: 'Browser',
  os: 'OS',
  event_type: 'Event',
}
// A panel's tabs are [dimension, name, columns]; columns are [metric, heading], visitors and pageviews unless given.
const VISITS = (name) => [
  ['visitors', 'Visitors'],
  ['visits', name],
]
const PANELS = [
  {
    // Each visit whole under how it came (visit:source, as in Plausible): per event, a visit's
    // later pages would count as Direct / None. Under a filter on another dimension, which
    // visits are counted by one dimension at a time, the panel counts per page view instead.
    id: 'sources',
    tabs: [
      ['visit:source', 'Sources'],
      ['visit:channel', 'Channels'],
      ['visit:utm_source', 'UTM source'],
      ['visit:utm_medium', 'UTM medium'],
      ['visit:utm_campaign', 'UTM campaign'],
    ],
  },
  {
    id: 'pages',
    tabs: [
      ['path', 'Top pages'],
      ['entry_page', 'Entry pages', VISITS('Entrances')],
      ['exit_page', 'Exit pages', VISITS('Exits')],
    ],
  },
  { id: 'countries', tabs: [['country', 'Countries']] },
  {
    id: 'devices',
    tabs: [
      ['device', 'Devices'],
      ['browser', 'Browsers'],
      ['os', 'OS'],
    ],
  },
  // Goals: the event types other than page views, with the share of all visitors who sent each.
  {
    id: 'goals',
    head: 'Goal',
    skip: ['pageview', 'page_view'],
    empty: 'No custom events in this range.',
    tabs: [
      [
        'event_type',
        'Goals',
        [
          ['visitors', 'Visitors'],
          ['events', 'Events'],
          ['conversion_rate', 'Conversion'],
        ],
      ],
    ],
  },
]
const DEFAULT_COLUMNS = [
  ['visitors', 'Visitors'],
  ['pageviews', 'Pageviews'],
]
// The top cards, in two queries so a range the visit metrics cannot answer still shows the others.
const CARDS = [
  ['visitors', 'pageviews', 'events'],
  ['visits', 'views_per_visit', 'bounce_rate', 'visit_duration'],
]
const REALTIME_MS = 10_000
const regions = new Intl.DisplayNames(['en'], { type: 'region' })
let filters = []
let gen = 0
// The site and token (or none) that have answered on this page: until a pair has, a load asks
// one question first, so a wrong token or a private site answers one 401, not ten.
let accepted = ''
// A shared link (/share/<site>#link=<secret>): the site it shows; null on /dashboard.
const shared = /^\/share\/([^/]+)$/.test(location.pathname) ? decodeURIComponent(location.pathname.slice(7)) : null
let plot
let realtimeGen = 0
// The zone of the chart's last answer: the site's, where the kept data allows.
let chartZone = 'UTC'
let realtimeTimer

const VISIT = 'visit:'
// visit:source reads "Source" in the panel's tab and column; its chip says "Source of the visit".
const plain = (dim) => (dim.startsWith(VISIT) ? dim.slice(VISIT.length) : dim)
const label = (dim) => LABELS[plain(dim)] ?? dim
// A filter on how the visit came (visit:source) counts whole visits: "Source of the visit is Google".
const filterLabel = (dim) => (dim.startsWith(VISIT) ? `${label(dim)} of the visit` : label(dim))
// The dimensions a filter may name: the labelled ones, the source panel's visit:* tabs, and props:<key>.
const filterable = (dim) => dim in LABELS || dim.startsWith('props:') || PANELS[0].tabs.some(([d]) => d === dim)
function shown(dim, value) {
  if (dim !== 'country' || value === NONE) return value
  try {
    return regions.of(value) ?? value
  } catch {
    return value
  }
}

// This page's address with these parameters, readable (':' and '/' left as they are).
const address = (params) => `${location.pathname}?${params.toString().replace(/%3A/g, ':').replace(/%2F/g, '/')}`
// A shared page needs its secret; /dashboard reads a public site without a token.
const mayAsk = () => Boolean(form.token.value || !shared)

// The URL: ?site=s&period=7d[&from=&to=]&f=dim:value..., readable (':' and '/' left as they are).
function readUrl() {
  const p = new URLSearchParams(location.search)
  form.site.value = shared ?? p.get('site') ?? ''
  form.from.value = p.get('from') ?? ''
  form.to.value = p.get('to') ?? ''
  const period = p.get('period') ?? (p.get('from') ? 'custom' : '30d')
  form.period.value = [...form.period.options].some((o) => o.value === period) ? period : '30d'
  custom()
  filters = p.getAll('f').flatMap((f) => {
    const m = /^(props:[^:]+|visit:[a-z_]+|[a-z_]+):([\s\S]*)$/.exec(f)
    return m && filterable(m[1]) ? [[m[1], m[2]]] : []
  })
  // A panel's tab other than its first: ?sources=channel&pages=entry_page.
  for (const panel of PANELS) {
    // A link from before sources were counted by visit names the tab without visit:.
    const tab = panel.tabs.find((t) => t[0] === p.get(panel.id) || t[0] === VISIT + p.get(panel.id))
    panel.dim = tab ? tab[0] : panel.tabs[0][0]
    renderTabs(panel)
  }
}
function custom() {
  const on = form.period.value === 'custom'
  form.classList.toggle('custom', on)
  form.from.required = form.to.required = on
  // Chosen without dates: the last 30 days to start from.
  if (on && !form.from.value && !form.to.value) {
    const today = new Date()
    const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`
    form.to.value = iso(today)
    form.from.value = iso(new Date(today.getFullYear(), today.getMonth(), today.getDate() - 29))
  }
  form.to.min = form.from.value
}
function writeUrl(push) {
  const p = new URLSearchParams(shared ? { period: form.period.value } : { site: form.site.value, period: form.period.value })
  if (form.period.value === 'custom') {
    p.set('from', form.from.value)
    p.set('to', form.to.value)
  }
  for (const [dim, value] of filters) p.append('f', `${dim}:${value}`)
  for (const panel of PANELS) if (panel.dim !== panel.tabs[0][0]) p.set(panel.id, panel.dim)
  const url = address(p)
  if (url !== location.pathname + location.search) history[push ? 'pushState' : 'replaceState'](null, '', url)
}

// The range as /v1/query's date_range: a preset, which the API resolves in the site's time zone, or [from, to] dates.
function range() {
  return form.period.value === 'custom' ? [form.from.value, form.to.value] : form.period.value
}
function granularity(r) {
  if (!Array.isArray(r)) return r === 'day' ? 'hour' : ['7d', '30d', 'month'].includes(r) ? 'day' : 'month'
  const days = (Date.parse(r[1]) - Date.parse(r[0])) / 86400000 + 1
  return days <= 1 ? 'hour' : days <= 93 ? 'day' : 'month'
}
// The local date (YYYY-MM-DD) a local day starting at this instant is: its hour's last moment in the zone.
function dayStarting(ms, tz) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(ms + 3599999))
}

class ApiError extends Error {}
const NO_SECRET = 'This shared dashboard opens only from the full link you were given (it ends in #link=…): this address lacks it.'

const UNREACHABLE = 'Cannot reach Sluice: check the connection, then press Show.'
// Past Sluice's own query timeout (25 s) and nginx's (30 s): a request still unanswered then never will be.
const ANSWER_MS = 35_000
async function api(path, body) {
  const headers = form.token.value ? { Authorization: `Bearer ${form.token.value}` } : {}
  const signal = AbortSignal.timeout(ANSWER_MS)
  let res
  try {
    res = await fetch(
      path,
      body ? { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal } : { headers, signal },
    )
  } catch {
    throw new ApiError(signal.aborted ? `Sluice did not answer within ${ANSWER_MS / 1000} s; press Show to try again.` : UNREACHABLE)
  }
  const data = await res.json().catch(() => ({}))
  if (res.ok) return data
  throw failure(res, data)
}
// An error answer as an ApiError whose message names the problem and its details.
function failure(res, data) {
  const e = data.error
  const details = data.details ?? e?.details
  const text =
    res.status === 401
      ? shared
        ? form.token.value
          ? 'This shared link is not valid (any more): it may have been revoked.'
          : NO_SECRET
        : form.token.value
          ? 'The stats token was not accepted (wrong, or revoked): enter another.'
          : "This site's stats need a token: enter its stats token."
      : res.status === 503
        ? `Sluice cannot answer right now (${data.code ?? res.status}); try again in a moment.`
        : res.status >= 500 && e === undefined
          ? `Sluice answered ${res.status} (${res.statusText || 'a server error'}); try again in a moment.`
          : typeof e === 'string'
            ? e
            : (e?.message ?? `${res.status} ${res.statusText}`)
  const err = new ApiError(text + (Array.isArray(details) && details.length ? `: ${details.map((d) => d.message ?? JSON.stringify(d)).join('; ')}` : ''))
  err.status = res.status
  err.code = data.code ?? e?.code
  return err
}
// Visits by how they came (visit:source) are counted from the visit rollups: by one dimension
// at a time, by whole days, as the rollup merges them, and (visitors) since the upgrade that
// kept them. A block they cannot answer counts per page view instead (source, where the later
// pages of a visit are Direct / None), and the answer says so (perEvent: 'filter' where a
// filter was counted so, else 'breakdown').
const PER_EVENT_CODES = ['visits_one_dimension', 'visits_whole_days', 'visits_not_recorded']
const PER_EVENT = {
  filter: "Per page view: only the pages that came with the filter's source, not the later pages of those visits.",
  breakdown: 'Per page view here: the later pages of a visit count as Direct / None.',
}
async function query(body, r) {
  const ask = (perEvent) => {
    const own = (dim) => (perEvent ? plain(dim) : dim)
    return api('/v1/query', {
      site_id: form.site.value,
      date_range: r,
      filters: filters.map(([dim, value]) => ['is', own(dim), [value]]),
      ...body,
      ...(body.dimensions ? { dimensions: body.dimensions.map(own) } : {}),
      ...(body.order_by ? { order_by: body.order_by.map(([key, dir]) => [own(key), dir]) } : {}),
    })
  }
  const byVisit = [...filters.map(([dim]) => dim), ...(body.dimensions ?? [])].some((d) => d.startsWith(VISIT))
  const perEvent = filters.some(([dim]) => dim.startsWith(VISIT)) ? 'filter' : 'breakdown'
  // Realtime is counted from raw events: per page view.
  if (byVisit && r === 'realtime') return { ...(await ask(true)), perEvent }
  try {
    return await ask(false)
  } catch (err) {
    if (!(byVisit && err instanceof ApiError && PER_EVENT_CODES.includes(err.code))) throw err
    // The period before can be from before the upgrade that kept visitors by source: the
    // caller asks again without the comparison (cardQuery), by visit, as the panels count.
    if (err.code === 'visits_not_recorded' && body.include?.comparisons) throw err
    return { ...(await ask(true)), perEvent }
  }
}
// What a 422 means for someone looking at the page; the API's own message stays in the tooltip.
const REFUSALS = {
  needs_raw_events:
    'Not kept for this range: this view with these filters needs raw events, which are kept for a day. Choose a shorter range, or remove a filter.',
  hourly_detail_expired: 'Hourly detail is no longer kept for this range: choose whole days.',
  dimensions_not_recorded: 'Not recorded for this range: this install counts it since an upgrade. Choose a later start.',
  visits_not_recorded: 'Visits are not recorded for this range: this install counts them since an upgrade. Choose a later start.',
  visits_one_dimension: 'Visit figures are counted by one dimension at a time: remove a filter to see them.',
  visits_one_value: 'Visit figures take one path or event type at a time: keep a single such filter.',
  visits_whole_days: 'Visit figures are counted by whole days: choose whole days.',
}
// Filters on which visits are counted (their entry, exit or source): only visit figures answer under them.
const visitOnly = (dim) => dim === 'entry_page' || dim === 'exit_page' || dim.startsWith(VISIT)
function refusal(err) {
  const named = filters.map(([dim, value]) => `${filterLabel(dim)} is ${shown(dim, value)}`).join(', ')
  if (err.code === 'needs_raw_events' && filters.length)
    return `Not kept for this range under the filter ${named}: a breakdown under a filter on another dimension needs raw events, which are kept for a day. Choose Today, or remove the filter.`
  if (err.code === 'visits_one_dimension' && filters.some(([dim]) => visitOnly(dim)))
    return `Under a source, entry page or exit page filter only the figures of those visits are counted, one dimension at a time: remove the filter ${named} to see this.`
  return REFUSALS[err.code] ?? err.message
}
// A 422 (the kept data cannot answer this) is said in its own block, briefly: the whole
// explanation once for the page, above the cards (see explainRefusals). Anything else goes
// up to #error, and the block says it did not load rather than staying blank.
function answerable(err, note) {
  if (!(err instanceof ApiError) || err.status !== 422) {
    note.textContent = 'Not loaded: see the message above.'
    note.title = err.message
    note.classList.add('warn')
    throw err
  }
  const why = refusal(err)
  note.textContent = `${why.split(':')[0].split(' under the filter')[0]} (see above).`
  note.dataset.why = why
  note.title = err.message
  note.dataset.codes = err.code ?? ''
  note.classList.add('warn')
}
function clear(note) {
  note.textContent = ''
  note.title = ''
  delete note.dataset.codes
  delete note.dataset.why
  delete note.dataset.perEvent
  note.classList.remove('warn')
}
// A block counted per page view under a filter on how visits came says so.
function perEventNote(note, ...bodies) {
  const how = bodies.find((b) => b?.perEvent)?.perEvent
  if (!how) return
  note.textContent = [note.textContent, PER_EVENT[how]].filter(Boolean).join(' ')
  note.dataset.perEvent = how
}
// Each reason a block was refused, once, above the cards (those the cards' own note gives aside).
function explainRefusals() {
  const said = $('cards-note').textContent
  const reasons = new Set([...document.querySelectorAll('.note[data-why]')].map((n) => n.dataset.why).filter((why) => !said.includes(why)))
  $('why').textContent = [...reasons].join(' · ')
}

// A card's value, and its change in percent against the period before (undefined: none asked or answered).
function setCard(metric, value, change, compared, tz = 'UTC') {
  const el = $(metric)
  el.textContent = value === undefined ? '–' : show(metric, value)
  if (value === undefined) delete el.dataset.value
  else el.dataset.value = String(value)
  const c = $(`${metric}-change`)
  // The bounce rate's change is in percentage points, and a rise is bad news.
  const rate = metric === 'bounce_rate'
  const better = rate ? change < 0 : change > 0
  const worse = rate ? change > 0 : change < 0
  c.className = `change${better ? ' up' : worse ? ' down' : ''}`
  c.textContent =
    // No line for a count that was and is 0 (a site with nothing yet): "0 %" says nothing.
    change === undefined || value == null || (value === 0 && change === 0 && !rate)
      ? ''
      : change === null
        ? 'new since the period before'
        : `${change > 0 ? '↑ ' : change < 0 ? '↓ ' : ''}${fmt(Math.abs(change))}${rate ? ' pts' : ' %'} vs ${
            // Today so far is compared with the whole of yesterday: say so, or every morning reads as a fall.
            form.period.value === 'day' ? 'all of yesterday' : 'the period before'
          }`
  // The compared period as the dates it covers (its end instant is exclusive: the last day is the hour before's).
  const [from, to] = compared?.date_range.map((x) => Date.parse(x)) ?? []
  c.title = compared ? `compared with ${dayStarting(from, tz)} – ${dayStarting(to - 3_600_000, tz)}` : ''
}
// A card query compared with the period before (not for all time); where the kept data cannot answer the
// comparison (422), the same query without it.
async function cardQuery(metrics, r) {
  if (r === 'all') return query({ metrics, dimensions: [] }, r)
  try {
    return await query({ metrics, dimensions: [], include: { comparisons: { mode: 'previous_period' } } }, r)
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 422) throw err
    return query({ metrics, dimensions: [] }, r)
  }
}
async function loadCards(r, my) {
  const note = $('cards-note')
  clear(note)
  const answers = await Promise.allSettled(CARDS.map((metrics) => cardQuery(metrics, r)))
  if (my !== gen) return
  answers.forEach((a, i) => {
    const body = a.status === 'fulfilled' ? a.value : undefined
    const first = body?.results[0]
    // Without visits there is no rate, views per visit or duration: their 0 is not 0 %. A period
    // before with none has nothing to compare with.
    const visitCards = CARDS[i][0] === 'visits'
    const noVisits = visitCards && first?.metrics[0] === 0
    const noVisitsBefore = visitCards && first?.comparison?.metrics[0] === 0
    CARDS[i].forEach((metric, j) => {
      const rate = j > 0 && noVisits
      const change = noVisitsBefore && !noVisits ? null : first?.comparison?.change[j]
      setCard(metric, body ? (rate ? null : (first?.metrics[j] ?? null)) : undefined, change, body?.meta.comparison, body?.meta.timezone)
    })
  })
  // 422s join in the note; anything else goes up to #error.
  const refused = answers.filter((a) => a.status === 'rejected' && a.reason instanceof ApiError && a.reason.status === 422)
  if (refused.length) {
    note.textContent = [...new Set(refused.map((a) => refusal(a.reason)))].join(' · ')
    note.title = [...new Set(refused.map((a) => a.reason.message))].join(' · ')
    note.dataset.codes = [...new Set(refused.map((a) => a.reason.code))].join(' ')
    note.classList.add('warn')
  }
  perEventNote(note, ...answers.map((a) => a.value))
  // Visit figures are counted in UTC days only: say so where the other cards follow the site's zone.
  const zones = answers.filter((a) => a.status === 'fulfilled').map((a) => a.value.meta.timezone)
  const local = zones.find((z) => z !== 'UTC')
  if (local && zones.includes('UTC')) {
    const zonesNote = `Visits, views per visit, bounce rate and duration are counted in UTC days; the other cards in ${local} days.`
    note.textContent = note.textContent ? `${note.textContent} · ${zonesNote}` : zonesNote
  }
  const failed = answers.find((a) => a.status === 'rejected' && !refused.includes(a))
  if (failed) throw failed.reason
}

// "N current visitors": visitors in the last 5 minutes under the filters, refreshed every REALTIME_MS while the tab is visible.
async function loadRealtime() {
  const my = ++realtimeGen
  const count = $('realtime-count')
  if (filters.some(([dim]) => dim === 'entry_page' || dim === 'exit_page')) {
    count.textContent = '–'
    delete count.dataset.value
    $('realtime').title = 'Current visitors are not counted under an entry or exit page filter'
    return
  }
  try {
    const body = await query({ metrics: ['visitors'], dimensions: [] }, 'realtime')
    if (my !== realtimeGen) return
    const n = body.results[0]?.metrics[0] ?? 0
    count.textContent = fmt(n)
    count.dataset.value = String(n)
    $('realtime-what').textContent = n === 1 ? 'current visitor' : 'current visitors'
    // Realtime is counted from raw events: under a filter on how visits came, per page view.
    $('realtime').title = body.perEvent ? `Visitors in the last 5 minutes. ${PER_EVENT[body.perEvent]}` : 'Visitors in the last 5 minutes'
  } catch (err) {
    if (my !== realtimeGen) return
    count.textContent = '–'
    delete count.dataset.value
    $('realtime').title = err.message
    // A token refused now is refused every 10 s too.
    if (err.status === 401) clearInterval(realtimeTimer)
  }
}
function scheduleRealtime() {
  clearInterval(realtimeTimer)
  realtimeTimer = undefined
  if (!document.hidden && form.site.value && mayAsk()) realtimeTimer = setInterval(loadRealtime, REALTIME_MS)
}

function bucketMs(s) {
  s = String(s).replace(' ', 'T')
  if (/^\d{4}$/.test(s)) s += '-01'
  if (/^\d{4}-\d{2}$/.test(s)) s += '-01'
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) s += 'T00:00:00'
  return Date.parse(/(Z|[+-]\d{2}:?\d{2})$/.test(s) ? s : `${s}Z`)
}
function nextBucket(ms, g) {
  const d = new Date(ms)
  return g === 'hour' ? ms + 3600000 : g === 'day' ? ms + 86400000 : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)
}
// Every bucket of the answer's range, zero where it has none, so the line does not skip gaps. Day, month and
// year labels are the site's local dates (placed at UTC midnight of that date); hours are instants.
function series(points, meta, g) {
  const byMs = new Map(points.map((p) => [p[0], p]))
  const times = points.map((p) => p[0])
  const [from, to] = meta.date_range ? meta.date_range.map((x) => Date.parse(x)) : [Math.min(...times), Date.now()]
  const local = (ms) => (g === 'hour' || !meta.date_range ? ms : bucketMs(dayStarting(ms, meta.timezone)))
  let start = local(from)
  if (g === 'month' && meta.date_range) start = Date.UTC(new Date(start).getUTCFullYear(), new Date(start).getUTCMonth(), 1)
  const end = local(to)
  for (let t = start; Number.isFinite(t) && t < end; t = nextBucket(t, g)) if (!byMs.has(t)) byMs.set(t, [t, 0, 0])
  const rows = [...byMs.values()].sort((a, b) => a[0] - b[0])
  return [rows.map((p) => p[0] / 1000), rows.map((p) => p[1]), rows.map((p) => p[2])]
}
async function loadChart(r, my) {
  const note = $('chart-note')
  const g = granularity(r)
  let data
  let zone
  let answered
  let tz = 'UTC'
  try {
    const body = await query({ metrics: ['visitors', 'events'], dimensions: [`time:${g}`] }, r)
    answered = body
    tz = body.meta.timezone
    zone = `${g === 'hour' ? 'Hours' : g === 'month' ? 'Months' : 'Days'} in ${tz}.`
    data = series(
      body.results.map((x) => [bucketMs(x.dimensions[0]), x.metrics[0], x.metrics[1]]),
      body.meta,
      g,
    )
  } catch (err) {
    if (my !== gen) return
    $('zone').textContent = ''
    plot?.destroy()
    plot = undefined
    answerable(err, note)
    return
  }
  if (my !== gen) return
  clear(note)
  perEventNote(note, answered)
  chartZone = tz
  $('zone').textContent = zone
  // Buckets that start after now have no data yet: a gap, not a zero.
  const now = Date.now() / 1000
  for (const s of [1, 2]) data[s] = data[s].map((x, i) => (data[0][i] > now ? null : x))
  plot?.destroy()
  const el = $('chart')
  plot = new uPlot(
    {
      width: el.clientWidth,
      height: 260,
      // The legend names the bucket as the axis does: an hour, a day or a month.
      series: [
        { label: g === 'hour' ? 'Hour' : g === 'month' ? 'Month' : 'Day', value: X_LABELS[g] },
        { label: 'Visitors', stroke: '#1aa179', width: 2 },
        { label: 'Events', stroke: '#2f6fec', width: 2 },
      ],
      scales: { x: { time: true } },
      // Hours are instants, shown in the site's zone. Days, months and years sit at the UTC
      // midnight of their (local) date: shown in UTC, the axis and the tooltip read the
      // bucket's own date, whatever the browser's zone.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), g === 'hour' ? tz : 'Etc/UTC'),
      // Ticks at least 80 px apart: days, not hours, on a week. Counts are whole numbers,
      // so the y axis steps by 1, 2, 5, 10, 20, 50… and never shows 2.5.
      axes: [{ space: 80 }, { incrs: WHOLE_STEPS }],
    },
    data,
    el,
  )
}

const X_LABELS = { hour: '{YYYY}-{MM}-{DD} {HH}:{mm}', day: '{YYYY}-{MM}-{DD}', month: '{YYYY}-{MM}' }
const WHOLE_STEPS = Array.from({ length: 36 }, (_, i) => [1, 2, 5][i % 3] * 10 ** Math.floor(i / 3))

function renderTabs(p) {
  const tabs = document.querySelector(`#p-${p.id} .tabs`)
  tabs.replaceChildren(
    ...(p.tabs.length > 1 ? p.tabs : []).map(([dim, name]) => {
      const b = document.createElement('button')
      b.type = 'button'
      b.textContent = name
      b.dataset.dim = dim
      b.className = dim === p.dim ? 'on' : ''
      b.setAttribute('aria-pressed', String(dim === p.dim))
      b.onclick = () => {
        p.dim = dim
        renderTabs(p)
        // Only the tab changes in the address: the form may hold a site or range not yet shown.
        const q = new URLSearchParams(location.search)
        if (dim === p.tabs[0][0]) q.delete(p.id)
        else q.set(p.id, dim)
        history.replaceState(null, '', address(q))
        // The buttons were rebuilt: keep the keyboard on the one just chosen.
        document.querySelector(`#p-${p.id} .tabs button[data-dim="${dim}"]`)?.focus()
        run([loadPanel(p, gen)])
      }
      return b
    }),
  )
}
function row(table, dim, x, max, columns) {
  const value = String(x.dimensions[0])
  const tr = table.insertRow()
  tr.className = 'row'
  tr.dataset.value = value
  const name = tr.insertCell()
  name.className = 'name'
  const bar = document.createElement('i')
  bar.style.width = `${max ? (100 * x.metrics[0]) / max : 0}%`
  const b = document.createElement('button')
  b.type = 'button'
  b.textContent = shown(dim, value)
  b.title = value
  if (value === NONE) b.className = 'none'
  name.append(bar, b)
  x.metrics.forEach((m, i) => {
    tr.insertCell().textContent = show(columns[i][0], m)
  })
  tr.onclick = () => addFilter(dim, value)
}
async function loadPanel(p, my, r = range()) {
  const el = $(`p-${p.id}`)
  const table = el.querySelector('table'),
    note = el.querySelector('.note')
  const dim = p.dim
  const columns = p.tabs.find((t) => t[0] === dim)[2] ?? DEFAULT_COLUMNS
  const skip = p.skip ?? []
  try {
    const metrics = columns.map((c) => c[0])
    // Ties in visitors read by value, so the order is the same on every load.
    const order_by = [
      ['visitors', 'desc'],
      [dim, 'asc'],
    ]
    const body = await query({ metrics, dimensions: [dim], order_by, limit: 10 + skip.length }, r)
    // Counted per page view (query()): a click then filters page views by their own source.
    const shownDim = body.perEvent ? plain(dim) : dim
    if (my !== gen || dim !== p.dim) return
    el.dataset.tz = body.meta.timezone
    const results = body.results.filter((x) => !skip.includes(x.dimensions[0])).slice(0, 10)
    table.replaceChildren()
    const head = table.createTHead().insertRow()
    for (const h of [p.head ?? label(dim), ...columns.map((c) => c[1])]) head.appendChild(document.createElement('th')).textContent = h
    const body2 = table.createTBody()
    const max = Math.max(0, ...results.map((x) => x.metrics[0]))
    for (const x of results) row(body2, shownDim, x, max, columns)
    clear(note)
    if (!results.length) note.textContent = p.empty ?? 'Nothing in this range.'
    perEventNote(note, body)
  } catch (err) {
    if (my !== gen || dim !== p.dim) return
    delete el.dataset.tz
    table.replaceChildren()
    answerable(err, note)
  }
}
// A panel the kept data answers in UTC days while the chart follows the site's zone says so,
// or its rows would not add up to the cards'.
function notePanelZones(my) {
  if (my !== gen || chartZone === 'UTC') return
  for (const p of PANELS) {
    const el = $(`p-${p.id}`)
    const note = el.querySelector('.note')
    const said = `Counted in UTC days; the chart and the cards in ${chartZone} days.`
    if (el.dataset.tz === 'UTC' && !note.classList.contains('warn') && !note.textContent.includes(said)) {
      note.textContent = [note.textContent, said].filter(Boolean).join(' ')
    }
  }
}

function renderFilters() {
  $('filters').replaceChildren(
    ...filters.map(([dim, value], i) => {
      const chip = document.createElement('span')
      chip.className = 'chip'
      chip.dataset.dim = dim
      const x = document.createElement('button')
      x.type = 'button'
      x.textContent = '×'
      x.title = 'Remove filter'
      x.setAttribute('aria-label', `Remove filter ${filterLabel(dim)} is ${shown(dim, value)}`)
      x.onclick = () => {
        filters.splice(i, 1)
        writeUrl(true)
        load()
      }
      chip.append(`${filterLabel(dim)} is ${shown(dim, value)}`, x)
      return chip
    }),
  )
}
function addFilter(dim, value) {
  filters = filters.filter((f) => f[0] !== dim).concat([[dim, value]])
  writeUrl(true)
  load()
}

// Runs loaders; body[data-loaded] is "true" once all have settled (and the panels' zone notes
// are written). Errors other than 422s go to #error, once each.
async function run(jobs) {
  document.body.dataset.loaded = 'false'
  const my = gen
  const results = await Promise.allSettled(jobs)
  if (my !== gen) return
  const messages = new Set(results.filter((x) => x.status === 'rejected').map((x) => x.reason.message))
  if (messages.size) $('error').textContent = [...messages].join(' · ')
  explainRefusals()
  notePanelZones(my)
  document.body.dataset.loaded = 'true'
}
async function load() {
  const my = ++gen
  $('error').textContent = ''
  $('why').textContent = ''
  sessionStorage.setItem(tokenKey, form.token.value)
  renderFilters()
  const r = range()
  const asking = `${form.site.value}\n${form.token.value}`
  if (accepted !== asking) {
    document.body.dataset.loaded = 'false'
    try {
      await query({ metrics: ['visitors'], dimensions: [] }, 'realtime')
      if (my === gen) accepted = asking
    } catch (err) {
      if (my !== gen) return
      if (err.status === 401 || err.status === 403) {
        clearInterval(realtimeTimer)
        $('error').textContent = err.message
        document.body.dataset.loaded = 'true'
        return
      }
    }
    if (my !== gen) return
  }
  scheduleRealtime()
  return run([loadCards(r, my), loadChart(r, my), loadRealtime(), ...PANELS.map((p) => loadPanel(p, my, r))])
}

// The whole view (every panel, under the filters) as a zip of CSVs, read with the same token.
async function exportZip() {
  const r = range()
  const p = new URLSearchParams({ site_id: form.site.value, date_range: Array.isArray(r) ? r.join(',') : r })
  for (const [dim, value] of filters) p.append('f', `${dim}:${value}`)
  if (r !== 'all') p.set('compare', 'previous_period')
  // The button says it is working, and an earlier export's error goes once this one is asked.
  const button = $('export')
  button.disabled = true
  button.textContent = 'Exporting…'
  $('error').textContent = ''
  try {
    const res = await fetch(`/v1/export?${p}`, { headers: form.token.value ? { Authorization: `Bearer ${form.token.value}` } : {} })
    if (!res.ok) {
      $('error').textContent = failure(res, await res.json().catch(() => ({}))).message
      return
    }
    const a = document.createElement('a')
    a.href = URL.createObjectURL(await res.blob())
    a.download = (/filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '') ?? [])[1] ?? 'sluice.zip'
    a.click()
    URL.revokeObjectURL(a.href)
  } finally {
    button.disabled = false
    button.textContent = 'Export'
  }
}

// The token from the #token= fragment (or, for a shared link, its secret from #link=), kept in sessionStorage
// (per site for links) and taken out of the address bar.
const fragment = new URLSearchParams(location.hash.slice(1))
const tokenKey = shared ? `sluice_link:${shared}` : 'sluice_token'
const secret = fragment.get(shared ? 'link' : 'token')
if (secret) {
  sessionStorage.setItem(tokenKey, secret)
  history.replaceState(null, '', location.pathname + location.search)
}
form.token.value = sessionStorage.getItem(tokenKey) ?? ''
// A shared page opened without its secret (an address copied after the page took the
// secret out of it) says what it needs instead of showing dashes.
if (shared && !form.token.value) $('error').textContent = NO_SECRET
readUrl()
if (shared) {
  document.body.classList.add('shared')
  $('shared-site').textContent = shared
  document.title = `${shared} · Sluice`
}
$('export').onclick = () => exportZip()
form.addEventListener('submit', (e) => {
  e.preventDefault()
  // A new view is a step of history: Back returns to the one before.
  writeUrl(true)
  load()
})
form.from.addEventListener('change', () => {
  form.to.min = form.from.value
})
form.period.addEventListener('change', () => {
  custom()
  if (form.period.value !== 'custom' && form.site.value) form.requestSubmit()
})
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && form.site.value && mayAsk()) loadRealtime()
  scheduleRealtime()
})
// The chart follows the page's width (a resized window, a turned phone).
addEventListener('resize', () => plot?.setSize({ width: $('chart').clientWidth, height: 260 }))
addEventListener('popstate', () => {
  readUrl()
  load()
})
if (form.site.value && mayAsk()) load()
