import type { Sql } from '../clients/clients.ts'
import type { Logger } from '../log/log.ts'
import { hashToken, type TokenKind } from './tokens.ts'

/** What ingest and the stats API need of a registered site. */
export type SiteEntry = { siteId: string; domains: readonly string[]; timezone: string; public: boolean }
/** What a presented token may do: its kind, and its one site (null for every site). */
export type Grant = { kind: TokenKind; siteId: string | null; tokenId: string }

export type RegistryOptions = {
  /** How often the registry version is polled; a change (a site added, a token revoked) is seen within this. */
  refreshMs?: number
}

export type Registry = {
  /** The registered site, or undefined. A Map lookup: ingest calls it for every event. */
  site(siteId: string): SiteEntry | undefined
  /** The grant of a secret that is a live (not revoked) token or link, or null. Hashes it and looks it up. */
  grant(secret: string): Grant | null
  /** Loads the registry, then polls it until `signal` aborts. Resolves once the first load is done. */
  start(signal: AbortSignal): Promise<void>
  /** Reloads now if the version moved (tests; the poll calls it). */
  refresh(): Promise<void>
  /** The version of the registry loaded, and how many sites and live tokens it holds. */
  stats(): { version: string; sites: number; tokens: number }
}

/**
 * The registry as each API process holds it in memory: every site and every live token
 * (by the hash of its secret), loaded whole and reloaded when registry_state.version moves.
 * Polling that version is the only query it makes, once every refreshMs whatever the
 * request rate; no request ever waits on Postgres for it. While Postgres is unreachable the
 * last registry loaded stays in force.
 */
export function createRegistry({ sql, log }: { sql: Sql; log: Logger }, { refreshMs = 1000 }: RegistryOptions = {}): Registry {
  let version = ''
  let sites = new Map<string, SiteEntry>()
  let tokens = new Map<string, Grant>()

  async function load() {
    await sql.begin('isolation level repeatable read read only', async (tx) => {
      const [state] = await tx`select version::text as version from registry_state`
      if (state!.version === version) return
      const siteRows = await tx`select site_id, domains, timezone, public from sites`
      const tokenRows = await tx`select id, encode(hash, 'hex') as hash, kind, site_id from access_tokens where revoked_at is null`
      sites = new Map(
        siteRows.map((r) => [
          r.site_id as string,
          Object.freeze({
            siteId: r.site_id as string,
            domains: Object.freeze(r.domains as string[]),
            timezone: r.timezone as string,
            public: r.public as boolean,
          }),
        ]),
      )
      tokens = new Map(
        tokenRows.map((r) => [
          r.hash as string,
          Object.freeze({ kind: r.kind as TokenKind, siteId: (r.site_id as string | null) ?? null, tokenId: r.id as string }),
        ]),
      )
      version = state!.version as string
    })
  }

  // One load at a time: a slow one is not overtaken by the next tick. A refresh asked for while
  // one runs waits for one more, which starts after it: the load in flight may have read the
  // registry before the caller's change (a revocation), so it cannot stand for the refresh.
  // Callers meanwhile share that one follow-up.
  let loading: Promise<void> | null = null
  let following: Promise<void> | null = null
  const refresh = (): Promise<void> => {
    if (!loading) {
      loading = load().finally(() => {
        loading = null
      })
      return loading
    }
    following ??= loading
      .catch(() => {})
      .then(() => {
        following = null
        return refresh()
      })
    return following
  }

  async function start(signal: AbortSignal) {
    await refresh()
    const timer = setInterval(() => {
      refresh().catch((err: Error) => log.warn({ err: err.message }, 'could not refresh the sites registry; keeping the one loaded'))
    }, refreshMs)
    timer.unref()
    signal.addEventListener('abort', () => clearInterval(timer), { once: true })
  }

  return {
    site: (siteId) => sites.get(siteId),
    grant: (secret) => tokens.get(hashToken(secret).toString('hex')) ?? null,
    start,
    refresh,
    stats: () => ({ version, sites: sites.size, tokens: tokens.size }),
  }
}

/** Whether a browser's Origin may send events for a site: any origin when it lists no domains, else its domains and their subdomains. */
export function originAllowed(site: SiteEntry, origin: string): boolean {
  if (site.domains.length === 0) return true
  const host = originHost(origin)
  return host !== null && hostAllowed(site, host)
}

/** Whether a host is one of a site's domains or a subdomain of one. */
export const hostAllowed = (site: SiteEntry, host: string): boolean =>
  site.domains.some((d) => host === d || (host.endsWith(d) && host.charCodeAt(host.length - d.length - 1) === 46))

/**
 * The host of an Origin header (scheme://host[:port], as browsers send it), lower-cased, or
 * null when it has none ("null" from sandboxed pages). String slicing, not new URL(): this
 * runs for every browser event of a site with domains.
 */
export function originHost(origin: string): string | null {
  const start = origin.indexOf('://')
  if (start < 0) return null
  const rest = origin.slice(start + 3)
  const end = rest.startsWith('[') ? rest.indexOf(']') + 1 : rest.search(/[:/]/)
  const host = (end > 0 ? rest.slice(0, end) : rest).toLowerCase()
  return host === '' ? null : host
}
