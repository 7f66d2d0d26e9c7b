// Package sites is the sites registry (domains, timezone, public flag), its access tokens
// and shared links, and the cache each API process reads them from (registry.ts).
import * as v from 'valibot'
import { databaseNow, type Sql } from '../clients/clients.ts'
import { SITE_ID_PATTERN } from '../event/event.ts'
import { SitesError } from './errors.ts'
import { isTimeZone } from './timezone.ts'

export type Site = { site_id: string; domains: string[]; timezone: string; public: boolean; created_at: string; updated_at: string }

const MAX_DOMAINS = 50
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/

export const SiteIdSchema = v.pipe(v.string('site_id must be a string'), v.regex(SITE_ID_PATTERN, 'site_id must be 1-128 characters of A-Z a-z 0-9 . _ : -'))
const DomainsSchema = v.pipe(
  v.array(
    v.pipe(
      v.string('domains must be strings'),
      v.transform((s) => s.trim().toLowerCase()),
      v.regex(HOSTNAME, 'a domain must be a host name such as shop.example (no scheme, port or path)'),
    ),
    'domains must be an array of host names',
  ),
  v.maxLength(MAX_DOMAINS, `at most ${MAX_DOMAINS} domains`),
  v.transform((ds) => [...new Set(ds)]),
)
const TimeZoneSchema = v.pipe(
  v.string('timezone must be a string'),
  v.check(isTimeZone, (i) => `timezone ${JSON.stringify(i.input)} is not an IANA time zone name such as Europe/Berlin or UTC`),
)
const PublicSchema = v.boolean('public must be true or false')

const NewSiteSchema = v.strictObject(
  {
    // "." and ".." are path segments a URL resolves away: the site's shared links and admin paths could not name it.
    site_id: v.pipe(
      SiteIdSchema,
      v.check((id) => id !== '.' && id !== '..', 'site_id cannot be "." or "..": URLs resolve those away'),
    ),
    domains: v.optional(DomainsSchema, []),
    timezone: v.optional(TimeZoneSchema, 'UTC'),
    public: v.optional(PublicSchema, false),
  },
  (i) => `unknown field ${i.received} (fields: site_id, domains, timezone, public)`,
)
const SitePatchSchema = v.strictObject(
  { domains: v.optional(DomainsSchema), timezone: v.optional(TimeZoneSchema), public: v.optional(PublicSchema) },
  (i) => `unknown field ${i.received} (fields: domains, timezone, public)`,
)
export type NewSite = v.InferInput<typeof NewSiteSchema>
export type SitePatch = v.InferInput<typeof SitePatchSchema>

/** Checks input against a schema, or throws SitesError invalid_site naming every problem. */
export function parseInput<T extends v.GenericSchema>(schema: T, input: unknown): v.InferOutput<T> {
  const r = v.safeParse(schema, input)
  if (r.success) return r.output
  throw new SitesError(
    'invalid_site',
    'the site is invalid',
    r.issues.map((i) => ({ field: v.getDotPath(i) ?? 'site', message: i.message })),
  )
}

/** Tables that hold site data but are not data of a site's own: never purged as such. */
const REGISTRY_TABLES = new Set(['sites', 'access_tokens', 'site_removals'])
/** How long a revoked token or link stays listed before the retention job deletes it. */
export const REVOKED_TOKEN_DAYS = 90
/** How long after a removal the retention job deletes again what arrives under the removed id. */
export const REMOVAL_SWEEP_HOURS = 24

export type Removal = { site_id: string; deleted: Record<string, number> }

export type Sites = ReturnType<typeof createSites>

/** The registry in Postgres: add, list, show, update and remove sites. */
export function createSites(sql: Sql) {
  const row = (r: Record<string, unknown>): Site => ({
    site_id: r.site_id as string,
    domains: r.domains as string[],
    timezone: r.timezone as string,
    public: r.public as boolean,
    created_at: (r.created_at as Date).toISOString(),
    updated_at: (r.updated_at as Date).toISOString(),
  })
  const notFound = (id: string) => new SitesError('site_not_found', `site ${JSON.stringify(id)} is not registered`)

  /** Postgres must know the zone too: its tz database can lag the runtime's. */
  async function checkZone(tz: string | undefined) {
    if (!tz) return
    const [known] = await sql`select 1 from pg_timezone_names where name = ${tz}`
    if (!known) throw new SitesError('invalid_site', 'the site is invalid', [{ field: 'timezone', message: `Postgres does not know the time zone ${tz}` }])
  }

  async function add(input: unknown): Promise<Site> {
    const s = parseInput(NewSiteSchema, input)
    await checkZone(s.timezone)
    return sql.begin(async (tx) => {
      const [r] = await tx`
        insert into sites (site_id, domains, timezone, public) values (${s.site_id}, ${s.domains}, ${s.timezone}, ${s.public})
        on conflict (site_id) do nothing returning *`
      if (!r) throw new SitesError('site_exists', `site ${JSON.stringify(s.site_id)} is already registered`)
      await tx`delete from site_removals where site_id = ${s.site_id}`
      return row(r)
    })
  }

  async function list(): Promise<Site[]> {
    return (await sql`select * from sites order by site_id`).map(row)
  }

  // An id outside SITE_ID_PATTERN was never registered; it is not sent to Postgres, which
  // refuses some of them (NUL) with an error instead of no row.
  async function show(id: string): Promise<Site> {
    if (!SITE_ID_PATTERN.test(id)) throw notFound(id)
    const [r] = await sql`select * from sites where site_id = ${id}`
    if (!r) throw notFound(id)
    return row(r)
  }

  async function update(id: string, input: unknown): Promise<Site> {
    if (!SITE_ID_PATTERN.test(id)) throw notFound(id)
    const p = parseInput(SitePatchSchema, input)
    await checkZone(p.timezone)
    const [r] = await sql`
      update sites set domains = coalesce(${p.domains ?? null}::text[], domains), timezone = coalesce(${p.timezone ?? null}, timezone),
                       public = coalesce(${p.public ?? null}::boolean, public), updated_at = now()
      where site_id = ${id} returning *`
    if (!r) throw notFound(id)
    return row(r)
  }

  /**
   * Removes a site and deletes everything stored for it, in one transaction: its tokens and
   * links, raw events, remembered event ids, every rollup (totals, paths, dimensions and
   * their remainders) and set-aside rows. Every table with a site_id column is purged, so
   * tables added later are too. The removal is recorded, so that the retention job deletes
   * again, for a day, what arrives under the id afterwards (events still queued).
   */
  async function remove(id: string): Promise<Removal> {
    if (!SITE_ID_PATTERN.test(id)) throw notFound(id)
    return sql.begin(async (tx) => {
      // A large site takes longer than the API's QUERY_TIMEOUT_MS: the removal is finished, not cancelled.
      await tx`set local statement_timeout = 0`
      // The site's row is locked, not yet deleted: deleting it (and its tokens) bumps the
      // registry's version, whose one row would then stay locked through the purge, and every
      // other registry change (a revocation of another site's token) would wait for it.
      const [found] = await tx`select 1 from sites where site_id = ${id} for update`
      if (!found) throw notFound(id)
      const deleted = await purge(tx as unknown as Sql, id, true)
      await tx`insert into site_removals (site_id) values (${id}) on conflict (site_id) do update set removed_at = now()`
      await tx`delete from sites where site_id = ${id}`
      return { site_id: id, deleted }
    })
  }

  /** Deletes again what was stored under recently removed ids; the retention job calls it. */
  async function sweepRemoved(asked?: Date): Promise<Removal[]> {
    const now = asked ?? (await databaseNow(sql))
    const since = new Date(now.getTime() - REMOVAL_SWEEP_HOURS * 3_600_000)
    // Swept once more before a removal is forgotten: a sweep late by more than a day (cron down) still comes after the last arrivals.
    const removed = await sql`select site_id from site_removals order by site_id`
    const out: Removal[] = []
    for (const { site_id } of removed) {
      const deleted = await sql.begin(async (tx) => {
        // Still removed? A site added again since the list was read (add deletes its removal
        // record) is live now: its new data is not swept. Locked, so an add waits for the sweep.
        const [still] =
          await tx`select 1 from site_removals r where site_id = ${site_id as string} and not exists (select 1 from sites s where s.site_id = r.site_id) for update`
        return still ? purge(tx as unknown as Sql, site_id as string, false) : null
      })
      if (deleted && Object.values(deleted).some((n) => n > 0)) out.push({ site_id: site_id as string, deleted })
    }
    await sql`delete from site_removals where removed_at < ${since}`
    return out
  }

  /**
   * Deletes tokens and links revoked more than REVOKED_TOKEN_DAYS ago (listed until then, with
   * revoked_at), so revocations do not pile up in the registry's table. Returns how many.
   */
  async function purgeRevokedTokens(asked?: Date): Promise<number> {
    const now = asked ?? (await databaseNow(sql))
    const before = new Date(now.getTime() - REVOKED_TOKEN_DAYS * 86_400_000)
    // A delete bumps the registry's version, and so reloads every API process, even when it
    // deletes nothing (the trigger is per statement): look first.
    const [due] = await sql`select 1 from access_tokens where revoked_at < ${before} limit 1`
    if (!due) return 0
    return (await sql`delete from access_tokens where revoked_at < ${before}`).count
  }

  return { add, list, show, update, remove, sweepRemoved, purgeRevokedTokens }
}

/**
 * Deletes a site's rows from every table that has a site_id column (partitions through
 * their parent), and its set-aside raw rows. event_ids of its events go with the events; a
 * full purge also deletes the ids whose raw rows are already gone (a scan of event_ids).
 */
async function purge(tx: Sql, id: string, full: boolean): Promise<Record<string, number>> {
  const tables = await tx`
    select c.relname as name from pg_attribute a
    join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
    where a.attname = 'site_id' and not a.attisdropped and c.relkind in ('r', 'p') and not c.relispartition
      and n.nspname = current_schema()
    order by c.relname`
  const deleted: Record<string, number> = {}
  const names = tables.map((t) => t.name as string).filter((t) => !REGISTRY_TABLES.has(t) && t !== 'events' && t !== 'event_ids')
  const [events] = await tx`
    with gone as (delete from events where site_id = ${id} returning event_id),
    ids as (delete from event_ids where event_id in (select event_id from gone) returning 1)
    select (select count(*) from gone)::int as events, (select count(*) from ids)::int as ids`
  deleted.events = events!.events as number
  deleted.event_ids = events!.ids as number
  if (full) deleted.event_ids += (await tx`delete from event_ids where site_id = ${id}`).count
  for (const name of names) deleted[name] = (await tx`delete from ${tx(name)} where site_id = ${id}`).count
  deleted.rollup_rejects = (await tx`delete from rollup_rejects where row ->> 'site_id' = ${id}`).count
  return deleted
}
