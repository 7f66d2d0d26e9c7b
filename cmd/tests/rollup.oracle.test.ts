import { describe, expect, test } from 'bun:test'
import { createEnricher, deviceFromScreen } from '../../internal/enrich/enrich.ts'
import { GRANULARITIES, truncate } from '../../internal/store/buckets.ts'
import { DIM_GRANULARITIES, DIMENSIONS, NONE, PAGEVIEW_TYPES, PAIRS } from '../../internal/store/dimensions.ts'
import { HLL_EXACT_UP_TO, rollupLag } from '../../internal/store/rollup.ts'
import { eventually, pipeline, prng, runBinary, spawnBinary } from '../../internal/testkit/testkit.ts'

// An exact oracle for the rollups: a seeded random workload of several sites over a year
// boundary goes through the real API and worker; the rollup runs repeatedly as the real
// cron binary, is SIGKILLed mid-run and run twice at once; then every bucket of every
// granularity must match what this file computes from the events it sent.

type Ev = {
  event_id: string
  site_id: string
  event_type: string
  /** Absent on some page views of visits: such a page view names no entry, exit or path. */
  path?: string
  user_id: string
  timestamp: string
  referrer?: string
  utm_source?: string
  utm_medium?: string
  utm_campaign?: string
  screen_width?: number
  click_id_param?: 'gclid' | 'msclkid'
  props?: Record<string, string | number | boolean>
  /** Forwarded by a trusted server (INGEST_FORWARD_TOKEN), as a backend relaying its visitors' events does. */
  ip: string
  user_agent: string
}

const rand = prng(20251114)
const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!
const uuid = () => {
  const h = Array.from({ length: 32 }, () => Math.floor(rand() * 16).toString(16))
  h[12] = '4'
  h[16] = '8'
  return `${h.slice(0, 8).join('')}-${h.slice(8, 12).join('')}-${h.slice(12, 16).join('')}-${h.slice(16, 20).join('')}-${h.slice(20).join('')}`
}

const SITES = [
  { id: 'oracle-big', users: 3000, events: 12_000 }, // month and year buckets go past the exact threshold
  { id: 'oracle-a', users: 300, events: 5_000 },
  { id: 'oracle-b', users: 50, events: 3_000 },
  { id: 'oracle:c.d_e', users: 5, events: 1_000 },
]
const PATHS = Array.from({ length: 40 }, (_, i) => `/page/${i}`)
const TYPES = ['pageview', 'pageview', 'pageview', 'click', 'signup']
const AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36',
  'curl/8.5.0',
]
const BOTS = [
  'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
  'Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0 Safari/537.36',
]
// Public addresses in several countries (resolved by the same country database as the API), and one private.
const IPS = ['8.8.8.8', '1.1.1.1', '81.2.69.142', '133.242.0.3', '200.160.2.3', '2a00:1450:4001::1', '10.0.0.7']
const REFERRERS = [
  'https://www.google.com/search?q=x',
  'https://news.ycombinator.com/item?id=1',
  'https://t.co/abc',
  'https://blog.example.org/post',
  'https://duckduckgo.com/',
  undefined,
  undefined,
]
const enricher = createEnricher()
const START = Date.parse('2024-11-20T00:00:00Z')
const SPAN = Date.parse('2025-02-10T00:00:00Z') - START

function workload(): Ev[] {
  const out: Ev[] = []
  for (const site of SITES) {
    for (let i = 0; i < site.events; i++) {
      out.push({
        event_id: uuid(),
        site_id: site.id,
        event_type: pick(TYPES),
        path: pick(PATHS),
        user_id: `user-${Math.floor(rand() * site.users)}`,
        timestamp: new Date(START + Math.floor(rand() * SPAN)).toISOString(),
        referrer: pick(REFERRERS),
        ...(rand() < 0.2
          ? { utm_source: pick(['newsletter', 'google', 'partner']), utm_medium: pick(['email', 'cpc', 'referral']), utm_campaign: pick(['spring', 'launch']) }
          : {}),
        ...(rand() < 0.3 ? { screen_width: pick([375, 800, 1440]) } : {}),
        ...(rand() < 0.1 ? { click_id_param: pick(['gclid', 'msclkid'] as const) } : {}),
        ...(rand() < 0.3 ? { props: { plan: pick(['free', 'pro', 'team']), seats: Math.floor(rand() * 3), annual: rand() < 0.5 } } : {}),
        ip: pick(IPS),
        user_agent: rand() < 0.05 ? pick(BOTS) : pick(AGENTS),
      })
    }
  }
  out.push(...visitWorkload())
  return out.sort(() => rand() - 0.5)
}

/**
 * Visitors with several visits each: page views 1 to 20 minutes apart (some at the same
 * instant as the one before, some without a path), visits hours or days apart, some running
 * over midnight at the end of a month or a year.
 */
function visitWorkload(): Ev[] {
  const out: Ev[] = []
  const starts = [Date.parse('2024-11-30T23:45:00Z'), Date.parse('2024-12-31T23:50:00Z'), Date.parse('2025-01-15T12:00:00Z')]
  for (const site of ['oracle-a', 'oracle-b', 'oracle:c.d_e']) {
    for (let v = 0; v < 40; v++) {
      let t = pick(starts) + Math.floor(rand() * 6) * 3_600_000 * (rand() < 0.5 ? -1 : 1)
      for (let visit = 0; visit < 3; visit++) {
        const views = 1 + Math.floor(rand() * 5)
        for (let i = 0; i < views; i++) {
          out.push({
            event_id: uuid(),
            site_id: site,
            event_type: i > 0 && rand() < 0.15 ? 'signup' : 'pageview',
            ...(rand() < 0.1 ? {} : { path: pick(PATHS) }),
            user_id: `visitor-${v}`,
            timestamp: new Date(t).toISOString(),
            referrer: pick(REFERRERS),
            ip: pick(IPS),
            user_agent: pick(AGENTS),
          })
          if (rand() < 0.85) t += (1 + Math.floor(rand() * 20)) * 60_000
        }
        t += (31 + Math.floor(rand() * 3000)) * 60_000
      }
    }
  }
  return out
}

type Visit = { site: string; user: string; start: number; end: number; events: number; pageviews: number; entry: string; exit: string; first: Ev }
/** Every visit of the stored events: one visitor's events on one site with each gap under 30 minutes. */
function expectedVisits(events: Ev[]): Visit[] {
  const byVisitor = new Map<string, Ev[]>()
  for (const e of events) byVisitor.set(`${e.site_id}|${e.user_id}`, [...(byVisitor.get(`${e.site_id}|${e.user_id}`) ?? []), e])
  const visits: Visit[] = []
  for (const evs of byVisitor.values()) {
    evs.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp))
    let current: Ev[] = []
    const close = () => {
      if (!current.length) return
      const views = current.filter((e) => (PAGEVIEW_TYPES as readonly string[]).includes(e.event_type))
      // Entry and exit: the earliest and latest page view with a path, ties by path in byte order.
      const key = (e: Ev) => `${new Date(e.timestamp).toISOString()}|${e.path}`
      const sorted = views
        .filter((e) => e.path !== undefined)
        .map(key)
        .sort()
      // The visit's attributes: its first event's, by time, then event_id.
      const first = [...current].sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || (a.event_id < b.event_id ? -1 : 1))[0]!
      visits.push({
        site: current[0]!.site_id,
        user: current[0]!.user_id,
        start: Date.parse(current[0]!.timestamp),
        end: Date.parse(current.at(-1)!.timestamp),
        events: current.length,
        pageviews: views.length,
        entry: sorted.length ? sorted[0]!.split('|')[1]! : '',
        exit: sorted.length ? sorted.at(-1)!.split('|')[1]! : '',
        first,
      })
      current = []
    }
    for (const e of evs) {
      if (current.length && Date.parse(e.timestamp) - Date.parse(current.at(-1)!.timestamp) >= 30 * 60_000) close()
      current.push(e)
    }
    close()
  }
  return visits
}

type Bucket = { views: number; byType: Map<string, number>; users: Set<string>; paths: Map<string, number> }
function expected(events: Ev[]) {
  const buckets = new Map<string, Bucket>()
  for (const e of events) {
    for (const g of GRANULARITIES) {
      const key = `${g}|${e.site_id}|${truncate(new Date(e.timestamp), g).toISOString()}`
      let b = buckets.get(key)
      if (!b) {
        b = { views: 0, byType: new Map(), users: new Set(), paths: new Map() }
        buckets.set(key, b)
      }
      b.views++
      b.byType.set(e.event_type, (b.byType.get(e.event_type) ?? 0) + 1)
      b.users.add(e.user_id)
      const pk = `${e.event_type}|${e.path}`
      if (e.path !== undefined) b.paths.set(pk, (b.paths.get(pk) ?? 0) + 1)
    }
  }
  return buckets
}

/** What the API derives for an event (null for a bot): the same libraries, so this checks the counting, not the mapping. */
function dimensionsOf(e: Ev): Record<string, string> | null {
  const agent = enricher.agent(e.user_agent)
  if (agent.bot) return null
  const src = enricher.source({
    referrer: e.referrer ?? null,
    utm_source: e.utm_source ?? null,
    utm_medium: e.utm_medium ?? null,
    utm_campaign: e.utm_campaign ?? null,
    path: e.path,
    click_id_param: e.click_id_param ?? null,
  })
  const dims: Record<string, string> = {
    source: src.source,
    referrer: src.referrer ?? '',
    channel: src.channel,
    utm_source: e.utm_source ?? '',
    utm_medium: e.utm_medium ?? '',
    utm_campaign: e.utm_campaign ?? '',
    utm_content: '',
    utm_term: '',
    country: enricher.country(e.ip) ?? '',
    browser: agent.browser ?? '',
    os: agent.os ?? '',
    device: (e.screen_width !== undefined ? deviceFromScreen(e.screen_width) : agent.device) ?? '',
    path: e.path ?? '',
    event_type: e.event_type,
  }
  for (const [k, v] of Object.entries(e.props ?? {})) dims[`props:${k}`] = String(v)
  return dims
}

type Cell = { events: number; pageviews: number; users: Set<string> }
/** Per granularity, site, dimension, value and bucket: events, page views and visitors. */
function expectedDims(events: Ev[]) {
  const cells = new Map<string, Cell>()
  for (const e of events) {
    const dims = dimensionsOf(e)!
    for (const g of DIM_GRANULARITIES) {
      const bucket = truncate(new Date(e.timestamp), g).toISOString().slice(0, 10)
      // A kept pair's cell is keyed by the filtered dimension's value, then the other's.
      const pairs = PAIRS.map(([a, b]) => [`${a}&${b}`, `${dims[b] || NONE}|${dims[a] || NONE}`] as const)
      for (const [dim, value] of [...Object.entries(dims), ...pairs]) {
        const key = `${g}|${e.site_id}|${dim}|${value === '' ? NONE : value}|${bucket}`
        const c = cells.get(key) ?? { events: 0, pageviews: 0, users: new Set<string>() }
        cells.set(key, c)
        c.events++
        if ((PAGEVIEW_TYPES as readonly string[]).includes(e.event_type)) c.pageviews++
        c.users.add(e.user_id)
      }
    }
  }
  return cells
}

describe('rollups against an exact oracle', () => {
  // Small worker batches and one transaction per rollup chunk make the rollup long enough to kill mid-run.
  const stack = pipeline({ STATS_TOKEN: 'oracle', WORKER_BATCH_SIZE: '100', ROLLUP_CHUNK_XIDS: '1', INGEST_FORWARD_TOKEN: 'oracle-forward' })
  const sent = new Map<string, Ev>()
  let bots = 0
  const log: string[] = []

  async function post(events: Ev[]) {
    for (let i = 0; i < events.length; i += 1000) {
      const res = await fetch(`${stack.base}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer oracle-forward' },
        body: JSON.stringify(events.slice(i, i + 1000)),
      })
      expect(res.status).toBe(202)
      // Bots are answered 202 like anyone, and never stored.
      for (const e of events.slice(i, i + 1000)) if (dimensionsOf(e)) sent.set(e.event_id, e)
      bots += events.slice(i, i + 1000).filter((e) => !dimensionsOf(e)).length
    }
  }
  async function drained() {
    const ok = await eventually(
      async () => {
        const [{ n }] = (await stack.db.sql`select count(*)::int as n from events`) as unknown as [{ n: number }]
        return n === sent.size && (await stack.r.redis.xlen(stack.r.queue.stream)) === 0
      },
      { timeoutMs: 60_000 },
    )
    expect(ok).toBe(true)
  }
  const unrolled = async () => (await rollupLag(stack.db.sql)).unrolled
  const rollupOnce = () => runBinary('cron', stack.env, ['--once', 'rollup'])

  test('every bucket of every granularity matches, through kills, concurrency, late events and duplicates', async () => {
    const { db, r, env, base } = stack
    const all = workload()
    const [first, second] = [all.slice(0, 14_000), all.slice(14_000)]

    await post(first)
    await drained()

    // SIGKILL the rollup once it has committed some chunks but not all.
    const cron = spawnBinary('cron', env, ['--once', 'rollup'])
    await eventually(async () => (await unrolled()) < sent.size, { timeoutMs: 30_000, intervalMs: 2 })
    cron.proc.kill('SIGKILL')
    await cron.proc.exited
    expect(cron.proc.signalCode).toBe('SIGKILL')
    const left = await unrolled()
    log.push(`killed mid-run with ${left} of ${sent.size} events not yet rolled up`)
    expect(left).toBeGreaterThan(0)

    // Late events (timestamps in hours already rolled up) and duplicate deliveries.
    const late = first.slice(0, 500).map((e) => ({ ...e, event_id: uuid(), user_id: `late-${e.user_id}` }))
    await post([...second, ...late])
    const retried = second.slice(0, 300)
    await post(retried) // a client retrying with the same event_id
    for (const e of first.slice(0, 200).filter((e) => sent.has(e.event_id))) {
      // a redelivery straight onto the stream, as after a worker crash
      const { ip: _ip, user_agent: _ua, referrer: _ref, screen_width: _w, click_id_param: _c, props: _p, ...stored } = e
      await r.redis.xadd(r.queue.stream, '*', 'e', JSON.stringify({ ...stored, timestamp: new Date(e.timestamp).toISOString(), received_at: Date.now() }))
    }

    // Two rollups at once, while events are still arriving.
    const [a, b] = await Promise.all([rollupOnce(), rollupOnce()])
    expect([a.code, b.code]).toEqual([0, 0])
    await drained()
    const final = await rollupOnce()
    expect(final.code).toBe(0)
    expect(await unrolled()).toBe(0)

    const oracle = expected([...sent.values()])
    let exactUsers = 0
    let approxUsers = 0
    for (const g of GRANULARITIES) {
      const rows = await db.sql`
        select site_id, bucket, sum(views)::int as views, hll_cardinality(hll_union_agg(users))::float8 as users,
               json_object_agg(event_type, views) as by_type, sum(other_path_views)::int as other
        from ${db.sql(`rollup_${g}`)} where site_id like 'oracle%' group by 1, 2`
      const paths = await db.sql`select site_id, bucket, event_type, path, views::int from ${db.sql(`rollup_${g}_paths`)} where site_id like 'oracle%'`
      const expectedKeys = [...oracle.keys()].filter((k) => k.startsWith(`${g}|`)).sort()
      expect(rows.map((row) => `${g}|${row.site_id}|${(row.bucket as Date).toISOString()}`).sort()).toEqual(expectedKeys)
      for (const row of rows) {
        const want = oracle.get(`${g}|${row.site_id}|${(row.bucket as Date).toISOString()}`)!
        expect({ g, site: row.site_id, bucket: row.bucket, views: row.views, byType: row.by_type, other: row.other }).toEqual({
          g,
          site: row.site_id,
          bucket: row.bucket,
          views: want.views,
          byType: Object.fromEntries(want.byType),
          other: 0,
        })
        if (want.users.size < HLL_EXACT_UP_TO) {
          expect(row.users).toBe(want.users.size)
          exactUsers++
        } else {
          expect(Math.abs(row.users - want.users.size) / want.users.size).toBeLessThanOrEqual(0.02)
          approxUsers++
        }
      }
      const gotPaths = new Map<string, number>()
      for (const p of paths) gotPaths.set(`${g}|${p.site_id}|${(p.bucket as Date).toISOString()}|${p.event_type}|${p.path}`, p.views as number)
      const wantPaths = new Map<string, number>()
      for (const [key, b] of oracle) if (key.startsWith(`${g}|`)) for (const [pk, n] of b.paths) wantPaths.set(`${key}|${pk}`, n)
      expect(Object.fromEntries([...gotPaths].sort())).toEqual(Object.fromEntries([...wantPaths].sort()))
    }
    log.push(`compared ${oracle.size} buckets; unique users exact in ${exactUsers}, within 2 % in ${approxUsers}`)
    expect(approxUsers).toBeGreaterThan(0)

    // The API answers from the same rollups: a whole-span monthly query for the big site.
    const site = 'oracle-big'
    const res = await fetch(`${base}/v1/stats?site_id=${site}&from=2024-11-01&to=2025-03-01&granularity=month&limit=100`, {
      headers: { authorization: 'Bearer oracle' },
    })
    const body = (await res.json()) as { totals: { views: number }; series: { bucket: string; views: number }[]; top_paths: { path: string; views: number }[] }
    expect(body.totals.views).toBe([...sent.values()].filter((e) => e.site_id === site).length)
    for (const s of body.series) expect(s.views).toBe(oracle.get(`month|${site}|${s.bucket}`)?.views ?? 0)
    const byPath = new Map<string, number>()
    for (const e of sent.values()) if (e.site_id === site && e.path !== undefined) byPath.set(e.path, (byPath.get(e.path) ?? 0) + 1)
    expect(Object.fromEntries(body.top_paths.map((p) => [p.path, p.views]))).toEqual(Object.fromEntries(byPath))

    // Every (dimension, value, bucket) of /v1/query, per site and granularity, against the oracle.
    const cells = expectedDims([...sent.values()])
    const got = new Map<string, { events: number; pageviews: number; visitors: number }>()
    const props = [...new Set([...cells.keys()].map((k) => k.split('|')[2]!).filter((d) => d.startsWith('props:')))]
    /** Asks /v1/query for `dim` by `g` with `filters`, and keeps each row's figures under `${g}|${site}|${cell}|${value}|${bucket}`. */
    const collect = async (site: string, cell: string, dim: string, g: string, filters: unknown[] = []) => {
      const res = await fetch(`${base}/v1/query`, {
        method: 'POST',
        headers: { authorization: 'Bearer oracle', 'content-type': 'application/json' },
        body: JSON.stringify({
          site_id: site,
          date_range: ['2024-01-01', '2025-12-31'],
          metrics: ['events', 'pageviews', 'visitors'],
          dimensions: [dim, `time:${g}`],
          filters,
          limit: 10_000,
        }),
      })
      expect(res.status).toBe(200)
      const answer = (await res.json()) as { results: { dimensions: string[]; metrics: number[] }[]; meta: { source: string; trimmed_events: number } }
      expect(answer.meta).toMatchObject({ source: 'rollups', trimmed_events: 0 })
      for (const {
        dimensions: [value, bucket],
        metrics: [events, pageviews, visitors],
      } of answer.results) {
        got.set(`${g}|${site}|${cell}|${value}|${bucket}`, { events: events!, pageviews: pageviews!, visitors: visitors! })
      }
    }
    for (const site of SITES) {
      for (const dim of [...DIMENSIONS, ...props]) for (const g of DIM_GRANULARITIES) await collect(site.id, dim, dim, g)
      // Each kept pair (source with country): the first dimension broken down, filtered by each value of the second.
      for (const [a, b] of PAIRS) {
        const name = `${a}&${b}`
        const filterValues = new Set([...cells.keys()].filter((k) => k.split('|')[1] === site.id && k.split('|')[2] === name).map((k) => k.split('|')[3]!))
        for (const fv of filterValues) for (const g of DIM_GRANULARITIES) await collect(site.id, `${name}|${fv}`, a, g, [['is', b, [fv]]])
      }
    }
    expect([...got.keys()].sort()).toEqual([...cells.keys()].sort())
    let exactVisitors = 0
    let approxVisitors = 0
    for (const [key, want] of cells) {
      const have = got.get(key)!
      expect({ key, events: have.events, pageviews: have.pageviews }).toEqual({ key, events: want.events, pageviews: want.pageviews })
      if (want.users.size < HLL_EXACT_UP_TO) {
        expect({ key, visitors: have.visitors }).toEqual({ key, visitors: want.users.size })
        exactVisitors++
      } else {
        expect(Math.abs(have.visitors - want.users.size) / want.users.size).toBeLessThanOrEqual(0.02)
        approxVisitors++
      }
    }
    log.push(
      `/v1/query: ${cells.size} (dimension, value, bucket) cells equal; visitors exact in ${exactVisitors}, within 2 % in ${approxVisitors}; ${bots} bot events sent, none stored`,
    )

    // Two dimensions at once come from raw events: exact while they are all kept, a 422 once some may be gone.
    const two = {
      site_id: 'oracle-a',
      date_range: ['2024-01-01', '2025-12-31'],
      metrics: ['events'],
      dimensions: ['browser'],
      filters: [['is', 'country', ['US']]],
    }
    const ask = (body: unknown) =>
      fetch(`${base}/v1/query`, { method: 'POST', headers: { authorization: 'Bearer oracle', 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const raw = (await (await ask(two)).json()) as { results: { dimensions: string[]; metrics: number[] }[]; meta: { source: string } }
    expect(raw.meta.source).toBe('raw_events')
    const want = new Map<string, number>()
    for (const e of sent.values()) {
      const d = dimensionsOf(e)!
      if (e.site_id === 'oracle-a' && d.country === 'US') want.set(d.browser || NONE, (want.get(d.browser || NONE) ?? 0) + 1)
    }
    expect(Object.fromEntries(raw.results.map((x) => [x.dimensions[0], x.metrics[0]]))).toEqual(Object.fromEntries(want))
    await db.sql`update rollup_state set raw_dropped_before = now()`
    const refused = await ask(two)
    expect(refused.status).toBe(422)
    expect(((await refused.json()) as { code: string }).code).toBe('needs_raw_events')

    // Visits: per bucket while they are all still open (VISIT_CLOSE_AFTER_MS is 30 minutes and
    // every event arrived within it), then once the rollup has closed and counted them all.
    const visits = expectedVisits([...sent.values()])
    await compareVisits(visits, 'open')
    const closing = await runBinary('cron', { ...env, VISIT_CLOSE_AFTER_MS: '0' }, ['--once', 'rollup'])
    expect(closing.code).toBe(0)
    const [{ open }] = (await db.sql`select count(*)::int as open from visits_open`) as unknown as [{ open: number }]
    expect(open).toBe(0)
    await compareVisits(visits, 'closed')
    log.push(`${visits.length} visits, with bounces, durations, entry and exit pages, sources, countries and conversion rates, equal open and closed`)
    console.log(`oracle: ${log.join('; ')}`)
  }, 300_000)

  /** Visit figures of /v1/query per day, month and year, entry and exit pages, sources and countries per month, and conversion rates, against the oracle's visits. */
  async function compareVisits(visits: Visit[], when: string) {
    const ask = async (body: Record<string, unknown>) => {
      const res = await fetch(`${stack.base}/v1/query`, {
        method: 'POST',
        headers: { authorization: 'Bearer oracle', 'content-type': 'application/json' },
        body: JSON.stringify({ date_range: ['2024-01-01', '2025-12-31'], limit: 10_000, ...body }),
      })
      expect(res.status).toBe(200)
      return ((await res.json()) as { results: { dimensions: string[]; metrics: number[] }[] }).results
    }
    const figures = (vs: Visit[]) => {
      const n = vs.length
      const bounces = vs.filter((v) => v.pageviews === 1).length
      const duration = vs.reduce((s, v) => s + v.end - v.start, 0)
      const views = vs.reduce((s, v) => s + v.pageviews, 0)
      return [n, Math.round((1000 * bounces) / n) / 10, Math.round(duration / n / 1000), Math.round((100 * views) / n) / 100]
    }
    for (const site of SITES) {
      const mine = visits.filter((v) => v.site === site.id)
      for (const g of DIM_GRANULARITIES) {
        const want = new Map<string, Visit[]>()
        for (const v of mine) {
          const b = truncate(new Date(v.start), g).toISOString().slice(0, 10)
          want.set(b, [...(want.get(b) ?? []), v])
        }
        const got = await ask({ site_id: site.id, metrics: ['visits', 'bounce_rate', 'visit_duration', 'views_per_visit'], dimensions: [`time:${g}`] })
        expect({ when, site: site.id, g, rows: Object.fromEntries(got.filter((r) => r.metrics[0]! > 0).map((r) => [r.dimensions[0], r.metrics])) }).toEqual({
          when,
          site: site.id,
          g,
          rows: Object.fromEntries([...want].map(([b, vs]) => [b, figures(vs)])),
        })
      }
      // By entry and exit page, and by the attributes a visit takes from its first event.
      const of: Record<string, (v: Visit) => string> = {
        entry_page: (v) => v.entry,
        exit_page: (v) => v.exit,
        source: (v) => dimensionsOf(v.first)!.source!,
        country: (v) => dimensionsOf(v.first)!.country!,
      }
      for (const dim of ['entry_page', 'exit_page', 'source', 'country'] as const) {
        const want = new Map<string, number>()
        for (const v of mine) {
          const key = `${of[dim]!(v) || NONE}|${truncate(new Date(v.start), 'month').toISOString().slice(0, 10)}`
          want.set(key, (want.get(key) ?? 0) + 1)
        }
        const got = await ask({ site_id: site.id, metrics: ['visits'], dimensions: [dim, 'time:month'] })
        expect({ when, site: site.id, dim, rows: Object.fromEntries(got.map((r) => [r.dimensions.join('|'), r.metrics[0]])) }).toEqual({
          when,
          site: site.id,
          dim,
          rows: Object.fromEntries([...want].sort()),
        })
      }
      // visit:source and visit:channel: each visit whole (its visitor, page views and events) under how its first event came.
      for (const dim of ['source', 'channel'] as const) {
        const want = new Map<string, { users: Set<string>; pageviews: number; events: number; visits: number }>()
        for (const v of mine) {
          const key = `${dimensionsOf(v.first)![dim] || NONE}|${truncate(new Date(v.start), 'month').toISOString().slice(0, 10)}`
          const w = want.get(key) ?? { users: new Set(), pageviews: 0, events: 0, visits: 0 }
          w.users.add(v.user)
          w.pageviews += v.pageviews
          w.events += v.events
          w.visits++
          want.set(key, w)
        }
        const got = await ask({ site_id: site.id, metrics: ['visitors', 'pageviews', 'events', 'visits'], dimensions: [`visit:${dim}`, 'time:month'] })
        const rows = Object.fromEntries(got.map((r) => [r.dimensions.join('|'), r.metrics]))
        expect({ when, site: site.id, dim, cells: Object.keys(rows).sort() }).toEqual({ when, site: site.id, dim, cells: [...want.keys()].sort() })
        for (const [key, w] of want) {
          const [visitors, pageviews, events, visits] = rows[key]!
          expect({ when, key, pageviews, events, visits }).toEqual({ when, key, pageviews: w.pageviews, events: w.events, visits: w.visits })
          if (w.users.size < HLL_EXACT_UP_TO) expect({ when, key, visitors }).toEqual({ when, key, visitors: w.users.size })
          else expect(Math.abs(visitors! - w.users.size) / w.users.size).toBeLessThanOrEqual(0.02)
        }
      }
      // Conversion rate: visitors who signed up over all visitors, exact below the sketch threshold.
      const users = new Set([...sent.values()].filter((e) => e.site_id === site.id).map((e) => e.user_id))
      const converted = new Set([...sent.values()].filter((e) => e.site_id === site.id && e.event_type === 'signup').map((e) => e.user_id))
      const [rate] = await ask({ site_id: site.id, metrics: ['conversion_rate'], filters: [['is', 'event_type', ['signup']]] })
      const want = Math.round((10_000 * converted.size) / users.size) / 100
      if (users.size < HLL_EXACT_UP_TO) expect({ when, site: site.id, rate: rate!.metrics[0] }).toEqual({ when, site: site.id, rate: want })
      else expect(Math.abs(rate!.metrics[0]! - want)).toBeLessThanOrEqual(want * 0.04)
    }
  }
})
