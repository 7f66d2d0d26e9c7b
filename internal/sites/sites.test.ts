import { describe, expect, test } from 'bun:test'
import type { Event } from '../event/event.ts'
import { silentLogger } from '../log/log.ts'
import { createStore } from '../store/store.ts'
import { eventually, isolated } from '../testkit/testkit.ts'
import { SitesError } from './errors.ts'
import { createRegistry, originAllowed } from './registry.ts'
import { createSites, REVOKED_TOKEN_DAYS } from './sites.ts'
import { dayOf, dayStart, localMidnight } from './timezone.ts'
import { createTokens, hashToken, MAX_ACTIVE_TOKENS, MAX_KEPT_TOKENS } from './tokens.ts'

const env = isolated()
/** Rolls up until every stored event is counted: a long transaction elsewhere on the server holds the horizon back for a while. */
const rolledUp = async (store: ReturnType<typeof createStore>) =>
  expect(
    await eventually(async () => (await store.rollup({ dimCap: 10 })).ran && (await store.rollupLag()).unrolled === 0, { timeoutMs: 120_000, intervalMs: 200 }),
  ).toBe(true)
const failure = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (err: unknown) => err as SitesError,
  )

describe('the sites registry', () => {
  test('adds, lists, shows and updates a site, normalising its domains', async () => {
    const sites = createSites(env.db.sql)
    const added = await sites.add({ site_id: 'reg-a', domains: ['Shop.Example', 'shop.example', ' blog.example '], timezone: 'America/New_York' })
    expect(added).toMatchObject({ site_id: 'reg-a', domains: ['shop.example', 'blog.example'], timezone: 'America/New_York', public: false })
    expect((await sites.list()).map((s) => s.site_id)).toContain('reg-a')
    expect(await sites.update('reg-a', { public: true, domains: [] })).toMatchObject({ public: true, domains: [], timezone: 'America/New_York' })
    expect((await sites.show('reg-a')).public).toBe(true)
  })

  test('names every problem with a site, and refuses a duplicate or an unknown one with its own code', async () => {
    const sites = createSites(env.db.sql)
    const bad = await failure(sites.add({ site_id: 'bad site', domains: ['https://x.example/'], timezone: 'Mars/Olympus', public: 'yes', colour: 1 }))
    expect(bad?.code).toBe('invalid_site')
    expect(bad?.details?.map((d) => d.field).sort()).toEqual(['colour', 'domains.0', 'public', 'site_id', 'timezone'])
    await sites.add({ site_id: 'reg-dup' })
    expect((await failure(sites.add({ site_id: 'reg-dup' })))?.code).toBe('site_exists')
    expect((await failure(sites.show('reg-none')))?.code).toBe('site_not_found')
    expect((await failure(sites.update('reg-none', { public: true })))?.code).toBe('site_not_found')
    expect((await failure(sites.remove('reg-none')))?.code).toBe('site_not_found')
  })

  test('removing a site deletes its rows from every table that holds site data (raw, rollups, open and closed visits, dedup entries), and nothing of other sites', async () => {
    const sites = createSites(env.db.sql)
    const store = createStore(env.db.sql)
    const tokens = createTokens(env.db.sql)
    await sites.add({ site_id: 'reg-gone' })
    await sites.add({ site_id: 'reg-kept' })
    await tokens.create({ kind: 'read', site_id: 'reg-gone' })
    const ev = (site: string, i: number): Event => ({
      event_id: crypto.randomUUID(),
      site_id: site,
      event_type: i % 2 ? 'pageview' : 'signup',
      path: `/p${i}`,
      user_id: `u${i}`,
      timestamp: '2025-03-01T10:00:00.000Z',
      received_at: Date.now(),
      source: 'Google',
      country: 'DE',
      props: { plan: 'pro' },
    })
    await store.insertEvents([...[0, 1, 2].map((i) => ev('reg-gone', i)), ...[0, 1].map((i) => ev('reg-kept', i))])
    await rolledUp(store)
    // Its visits so far are closed into the visit rollups; a later event opens another, left open.
    expect((await store.rollup({ dimCap: 10, visitCloseAfterMs: 0 })).ran).toBe(true)
    await store.insertEvents([ev('reg-gone', 3)])
    await rolledUp(store)
    // A set-aside row and an event id whose raw row is gone are data of the site too.
    await env.db
      .sql`insert into rollup_rejects (event_id, row, code, error) values (${crypto.randomUUID()}, ${env.db.sql.json({ site_id: 'reg-gone' })}, 'x', 'x')`
    await env.db.sql`insert into event_ids (event_id, site_id) values (${crypto.randomUUID()}, 'reg-gone')`
    await env.db
      .sql`insert into rollup_day_dim_other select site_id, bucket, dim, events, pageviews, users from rollup_day_dims where site_id = 'reg-gone' limit 1`
    await env.db.sql`
      insert into rollup_day_visit_other select site_id, bucket, dim, visits, bounces, duration_ms, pageviews, events, users
      from rollup_day_visits where site_id = 'reg-gone' limit 1`

    const holding = async (site: string) => {
      const tables = await env.db.sql`
        select c.relname as name from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        where a.attname = 'site_id' and c.relkind in ('r', 'p') and not c.relispartition and n.nspname = current_schema()`
      const out: Record<string, number> = {}
      for (const { name } of tables) {
        const [r] = await env.db.sql`select count(*)::int as n from ${env.db.sql(name as string)} where site_id = ${site}`
        if (r!.n) out[name as string] = r!.n as number
      }
      const [rejects] = await env.db.sql`select count(*)::int as n from rollup_rejects where row ->> 'site_id' = ${site}`
      if (rejects!.n) out.rollup_rejects = rejects!.n as number
      return out
    }
    const before = await holding('reg-gone')
    console.log('BEFORE', JSON.stringify(before))
    const visitTables = ['visits_open', 'rollup_hour_visits', 'rollup_day_visits', 'rollup_month_visits', 'rollup_year_visits', 'rollup_day_visit_other']
    for (const t of [
      'events',
      'event_ids',
      'rollup_hour',
      'rollup_day_paths',
      'rollup_year_dims',
      'rollup_day_dim_other',
      ...visitTables,
      'access_tokens',
      'rollup_rejects',
    ]) {
      expect(before[t]).toBeGreaterThan(0)
    }
    const kept = await holding('reg-kept')

    const removal = await sites.remove('reg-gone')
    expect(removal.deleted).toMatchObject({ events: 4, event_ids: 5, rollup_rejects: 1 })
    expect(await holding('reg-gone')).toEqual({ site_removals: 1 })
    expect(await holding('reg-kept')).toEqual(kept)
  }, 150_000)

  test('the retention sweep deletes what arrives for a removed site for a day, and adding the site again ends that', async () => {
    const sites = createSites(env.db.sql)
    const store = createStore(env.db.sql)
    await sites.add({ site_id: 'reg-late' })
    await sites.remove('reg-late')
    const late: Event = {
      event_id: crypto.randomUUID(),
      site_id: 'reg-late',
      event_type: 'pageview',
      path: '/',
      user_id: 'u',
      timestamp: '2025-03-01T10:00:00.000Z',
      received_at: Date.now(),
    }
    await store.insertEvents([late])
    await rolledUp(store)
    const swept = await sites.sweepRemoved()
    expect(swept.find((s) => s.site_id === 'reg-late')?.deleted).toMatchObject({ events: 1, event_ids: 1, rollup_day: 1 })
    await sites.add({ site_id: 'reg-late' })
    await store.insertEvents([{ ...late, event_id: crypto.randomUUID() }])
    expect((await sites.sweepRemoved()).find((s) => s.site_id === 'reg-late')).toBeUndefined()
    const [n] = await env.db.sql`select count(*)::int as n from events where site_id = 'reg-late'`
    expect(n!.n).toBe(1)
    // A removal older than a day is swept once more, then forgotten: a sweep late by more than a day still deletes what arrived.
    await sites.remove('reg-late')
    await store.insertEvents([{ ...late, event_id: crypto.randomUUID() }])
    const lateSweep = await sites.sweepRemoved(new Date(Date.now() + 25 * 3_600_000))
    expect(lateSweep.find((s) => s.site_id === 'reg-late')?.deleted).toMatchObject({ events: 1 })
    expect(await env.db.sql`select 1 from site_removals where site_id = 'reg-late'`).toHaveLength(0)
    expect((await sites.sweepRemoved(new Date(Date.now() + 25 * 3_600_000))).find((s) => s.site_id === 'reg-late')).toBeUndefined()
  }, 150_000)
})

describe('tokens and links', () => {
  test('created while their site is being removed, are refused as site_not_found, not as a foreign key error', async () => {
    const sites = createSites(env.db.sql)
    const tokens = createTokens(env.db.sql)
    await sites.add({ site_id: 'tok-going' })
    // A removal under way: the site's row is locked, then deleted.
    const removal = await env.db.sql.reserve()
    try {
      await removal`begin`
      await removal`select 1 from sites where site_id = 'tok-going' for update`
      const creating = tokens.create({ kind: 'read', site_id: 'tok-going' }).catch((err: unknown) => err)
      await Bun.sleep(200)
      await removal`delete from sites where site_id = 'tok-going'`
      await removal`commit`
      const err = await creating
      expect(err).toBeInstanceOf(SitesError)
      expect((err as SitesError).code).toBe('site_not_found')
    } finally {
      removal.release()
    }
  })

  test('are stored only as the SHA-256 of their secret, which is shown once', async () => {
    const sites = createSites(env.db.sql)
    const tokens = createTokens(env.db.sql)
    await sites.add({ site_id: 'tok-site' })
    const t = await tokens.create({ kind: 'read', site_id: 'tok-site', name: 'client' })
    expect(t.token).toMatch(/^sl_[A-Za-z0-9_-]{32}$/)
    const [row] = await env.db.sql`select * from access_tokens where id = ${t.id}`
    expect(Buffer.from(row!.hash as Uint8Array).equals(hashToken(t.token))).toBe(true)
    const text = JSON.stringify(await env.db.sql`select to_jsonb(a)::text as r from access_tokens a`)
    expect(text).not.toContain(t.token)
    expect(text).not.toContain(t.token.slice(3))
    expect(JSON.stringify(await tokens.list())).not.toContain(t.token)
    const link = await tokens.create({ kind: 'link', site_id: 'tok-site' })
    expect(link.path).toBe(`/share/tok-site#link=${link.token}`)
    expect((await tokens.list({ siteId: 'tok-site', kind: 'link' })).map((x) => x.id)).toEqual([link.id])
  })

  test('a site, and all sites together, hold at most MAX_ACTIVE_TOKENS that are not revoked, also when created at once', async () => {
    const sites = createSites(env.db.sql)
    const tokens = createTokens(env.db.sql)
    await sites.add({ site_id: 'cap-site' })
    const made = await Promise.allSettled(
      Array.from({ length: MAX_ACTIVE_TOKENS + 5 }, (_, i) => tokens.create({ kind: i % 2 ? 'link' : 'read', site_id: 'cap-site' })),
    )
    const refused = made.filter((m) => m.status === 'rejected').map((m) => (m.reason as SitesError).code)
    expect(refused).toEqual(Array(5).fill('too_many_tokens'))
    expect(await tokens.list({ siteId: 'cap-site' })).toHaveLength(MAX_ACTIVE_TOKENS)
    // Another site's, and all-sites tokens, are counted apart.
    await sites.add({ site_id: 'cap-other' })
    expect((await tokens.create({ kind: 'read', site_id: 'cap-other' })).id).toMatch(/^tok_/)
    const first = made.find((m) => m.status === 'fulfilled')!.value
    await tokens.revoke(first.id)
    expect((await tokens.create({ kind: 'read', site_id: 'cap-site' })).id).toMatch(/^tok_/)
    expect((await failure(tokens.create({ kind: 'read', site_id: 'cap-site' })))?.message).toContain('revoke some first')
  })

  test('a site keeps at most MAX_KEPT_TOKENS, revoked ones included: past it a creation deletes the oldest revoked, so a loop of create and revoke cannot grow the table', async () => {
    const sites = createSites(env.db.sql)
    const tokens = createTokens(env.db.sql)
    await sites.add({ site_id: 'churn-site' })
    // As if a site's admin had created and revoked tokens in a loop (faster than through create()), the first revoked first.
    await env.db.sql`
      insert into access_tokens (id, hash, kind, site_id, name, revoked_at)
      select 'tok_' || lpad(to_hex(i), 12, '0'), sha256(i::text::bytea), 'read', 'churn-site', '', now() - make_interval(secs => ${MAX_KEPT_TOKENS} - i)
      from generate_series(1, ${MAX_KEPT_TOKENS - 1}) i`
    const live = await tokens.create({ kind: 'read', site_id: 'churn-site' })
    const kept = async () => (await env.db.sql`select id from access_tokens where site_id = 'churn-site' order by id`).map((r) => r.id as string)
    expect(await kept()).toHaveLength(MAX_KEPT_TOKENS)
    for (let i = 0; i < 3; i++) {
      const t = await tokens.create({ kind: 'link', site_id: 'churn-site' })
      await tokens.revoke(t.id)
    }
    const now = await kept()
    expect(now).toHaveLength(MAX_KEPT_TOKENS)
    // The three oldest revoked went; the token not revoked stays, and so do the newest.
    for (const gone of ['tok_000000000001', 'tok_000000000002', 'tok_000000000003']) expect(now).not.toContain(gone)
    expect(now).toContain('tok_000000000004')
    expect(now).toContain(live.id)
  })

  test('a retention sweep with no revoked token to delete leaves the registry version alone, so no API process reloads', async () => {
    const sites = createSites(env.db.sql)
    const version = async () => (await env.db.sql`select version::text as v from registry_state`)[0]!.v as string
    const before = await version()
    expect(await sites.purgeRevokedTokens()).toBe(0)
    expect(await version()).toBe(before)
  })

  test('revoked ones stay listed for REVOKED_TOKEN_DAYS, then the retention sweep deletes them', async () => {
    const sites = createSites(env.db.sql)
    const tokens = createTokens(env.db.sql)
    await sites.add({ site_id: 'purge-site' })
    const [old, recent, live] = [
      await tokens.create({ kind: 'read', site_id: 'purge-site' }),
      await tokens.create({ kind: 'link', site_id: 'purge-site' }),
      await tokens.create({ kind: 'read', site_id: 'purge-site' }),
    ]
    await tokens.revoke(old.id)
    await tokens.revoke(recent.id)
    await env.db.sql`update access_tokens set revoked_at = now() - ${`${REVOKED_TOKEN_DAYS + 1} days`}::interval where id = ${old.id}`
    expect(await sites.purgeRevokedTokens()).toBe(1)
    expect((await tokens.list({ siteId: 'purge-site' })).map((t) => t.id).sort()).toEqual([recent.id, live.id].sort())
  })

  test('refuse a link without a site, an unknown kind, and a site that is not registered', async () => {
    const tokens = createTokens(env.db.sql)
    expect((await failure(tokens.create({ kind: 'link' })))?.details?.[0]?.field).toBe('site_id')
    expect((await failure(tokens.create({ kind: 'owner' })))?.code).toBe('invalid_token_request')
    expect((await failure(tokens.create({ kind: 'read', site_id: 'nowhere' })))?.code).toBe('site_not_found')
    expect((await failure(tokens.revoke('tok_nope')))?.code).toBe('token_not_found')
  })
})

describe('the registry cache', () => {
  test('a refresh asked for while a load runs waits for a load that starts after it, so a revocation just made is seen', async () => {
    const sites = createSites(env.db.sql)
    const tokens = createTokens(env.db.sql)
    await sites.add({ site_id: 'race-site' })
    const t = await tokens.create({ kind: 'read', site_id: 'race-site' })
    // A load whose snapshot is taken, then held: as a poll tick that read the registry just before a revocation.
    let release = () => {}
    const held = new Promise<void>((r) => (release = r))
    let hold = false
    const sql = new Proxy(env.db.sql, {
      get(target, key, receiver) {
        if (key !== 'begin') return Reflect.get(target, key, receiver)
        return (mode: string, fn: (tx: unknown) => Promise<unknown>) =>
          target.begin(mode, async (tx) => {
            const out = await fn(tx)
            if (hold) await held
            return out
          })
      },
    })
    const registry = createRegistry({ sql, log: silentLogger() }, { refreshMs: 60_000 })
    await registry.refresh()
    expect(registry.grant(t.token)).not.toBeNull()
    hold = true
    const tick = registry.refresh()
    await tokens.revoke(t.id)
    hold = false
    const asked = registry.refresh()
    release()
    await Promise.all([tick, asked])
    expect(registry.grant(t.token)).toBeNull()
  })

  test('removing a large site holds up no other registry change: a token of another site is revoked meanwhile', async () => {
    const sites = createSites(env.db.sql)
    const tokens = createTokens(env.db.sql)
    await sites.add({ site_id: 'big-site' })
    await sites.add({ site_id: 'other-site' })
    const t = await tokens.create({ kind: 'read', site_id: 'other-site' })
    // A slow purge, as a large site's: another session keeps the day rollups from being deleted for now.
    const blocker = await env.db.sql.reserve()
    try {
      await blocker`begin`
      await blocker`lock table rollup_day in share mode`
      const removal = sites.remove('big-site')
      await Bun.sleep(300)
      const revoked = await Promise.race([tokens.revoke(t.id).then(() => 'revoked'), Bun.sleep(3000).then(() => 'waiting')])
      expect(revoked).toBe('revoked')
      await blocker`commit`
      expect((await removal).site_id).toBe('big-site')
    } finally {
      await blocker`rollback`.catch(() => {})
      blocker.release()
    }
    expect(await sites.show('big-site').catch((err: SitesError) => err.code)).toBe('site_not_found')
  })

  test('sees a new site, a revoked token and a removed site at its next refresh, with one query per refresh', async () => {
    const sites = createSites(env.db.sql)
    const tokens = createTokens(env.db.sql)
    const registry = createRegistry({ sql: env.db.sql, log: silentLogger() }, { refreshMs: 100 })
    const stop = new AbortController()
    await registry.start(stop.signal)
    try {
      expect(registry.site('cache-site')).toBeUndefined()
      await sites.add({ site_id: 'cache-site', domains: ['shop.example'], timezone: 'Asia/Kolkata' })
      const t = await tokens.create({ kind: 'admin', site_id: 'cache-site' })
      await Bun.sleep(400)
      expect(registry.site('cache-site')).toEqual({ siteId: 'cache-site', domains: ['shop.example'], timezone: 'Asia/Kolkata', public: false })
      expect(registry.grant(t.token)).toEqual({ kind: 'admin', siteId: 'cache-site', tokenId: t.id })
      expect(registry.grant(`${t.token}x`)).toBeNull()
      await tokens.revoke(t.id)
      await Bun.sleep(400)
      expect(registry.grant(t.token)).toBeNull()
      await sites.remove('cache-site')
      await Bun.sleep(400)
      expect(registry.site('cache-site')).toBeUndefined()
    } finally {
      stop.abort()
    }
  })

  test('matches an Origin against a site domain and its subdomains only', () => {
    const site = { siteId: 's', domains: ['shop.example'], timezone: 'UTC', public: false }
    expect(originAllowed(site, 'https://shop.example')).toBe(true)
    expect(originAllowed(site, 'http://www.shop.example:8080')).toBe(true)
    expect(originAllowed(site, 'https://evilshop.example')).toBe(false)
    expect(originAllowed(site, 'https://shop.example.evil.test')).toBe(false)
    expect(originAllowed(site, 'null')).toBe(false)
    expect(originAllowed({ ...site, domains: [] }, 'https://anyone.example')).toBe(true)
  })
})

describe('local days', () => {
  test('start at local midnight across DST in New York, and at the UTC hour holding it in Kolkata', () => {
    const iso = (ms: number) => new Date(ms).toISOString()
    expect(iso(localMidnight('2025-03-09', 'America/New_York'))).toBe('2025-03-09T05:00:00.000Z')
    expect(iso(localMidnight('2025-03-10', 'America/New_York'))).toBe('2025-03-10T04:00:00.000Z')
    expect(iso(localMidnight('2025-11-02', 'America/New_York'))).toBe('2025-11-02T04:00:00.000Z')
    expect(iso(localMidnight('2025-11-03', 'America/New_York'))).toBe('2025-11-03T05:00:00.000Z')
    expect(dayStart('2025-03-01', 'Asia/Kolkata').toISOString()).toBe('2025-02-28T18:00:00.000Z')
    expect(dayStart('2025-03-01', 'America/St_Johns').toISOString()).toBe('2025-03-01T03:00:00.000Z')
    expect(dayOf(Date.parse('2025-02-28T18:10:00Z'), 'Asia/Kolkata')).toBe('2025-03-01')
    expect(dayOf(Date.parse('2025-02-28T17:59:00Z'), 'Asia/Kolkata')).toBe('2025-02-28')
    expect(dayOf(Date.parse('2025-03-09T04:59:00Z'), 'America/New_York')).toBe('2025-03-08')
    expect(dayOf(Date.parse('2025-03-09T05:00:00Z'), 'America/New_York')).toBe('2025-03-09')
    // Santiago skips its midnight at the start of DST: the day starts when the clocks land.
    expect(iso(localMidnight('2024-09-08', 'America/Santiago'))).toBe('2024-09-08T04:00:00.000Z')
    // Samoa skipped 2011-12-30 altogether: that day lasts no time, and starts with the next.
    expect(iso(localMidnight('2011-12-30', 'Pacific/Apia'))).toBe('2011-12-30T10:00:00.000Z')
    expect(iso(localMidnight('2011-12-31', 'Pacific/Apia'))).toBe('2011-12-30T10:00:00.000Z')
    expect(iso(localMidnight('2011-12-29', 'Pacific/Apia'))).toBe('2011-12-29T10:00:00.000Z')
  })
})
