import { hostAllowed, originHost, type Registry, type SiteEntry } from '../sites/registry.ts'

export type SiteRefusal = { code: 'site_not_allowed' | 'origin_not_allowed'; message: string }

export type SiteCheckOptions = {
  /** INGEST_ALLOWED_SITES: when set, only these site_ids (used without the registry). */
  allowedSites?: readonly string[] | null
  /** SITES_REGISTRY: only sites in the registry are accepted. */
  requireRegistered?: boolean
}

/**
 * Whether ingest accepts an event of `siteId` sent with this Origin header (null from
 * servers): null when it does, else why not. Reads the registry's in-memory cache only: a
 * Map lookup per event, and a host comparison for browser requests to sites with domains.
 */
export function createSiteCheck(registry: Pick<Registry, 'site'> | null, { allowedSites = null, requireRegistered = false }: SiteCheckOptions = {}) {
  const listed = allowedSites?.length ? new Set(allowedSites) : null
  // Browsers send few distinct origins: each one's host is read once (bounded, emptied when full).
  const hosts = new Map<string, string | null>()
  const hostOf = (origin: string) => {
    let host = hosts.get(origin)
    if (host === undefined) {
      if (hosts.size >= 10_000) hosts.clear()
      host = originHost(origin)
      hosts.set(origin, host)
    }
    return host
  }
  const allowed = (site: SiteEntry, origin: string) => {
    if (site.domains.length === 0) return true
    const host = hostOf(origin)
    return host !== null && hostAllowed(site, host)
  }
  const notHere = (siteId: string): SiteRefusal => ({ code: 'site_not_allowed', message: `site_id ${JSON.stringify(siteId)} is not registered here` })
  return function checkSite(siteId: string, origin: string | null): SiteRefusal | null {
    if (listed && !listed.has(siteId)) return notHere(siteId)
    const site = registry?.site(siteId)
    if (!site) return requireRegistered ? notHere(siteId) : null
    if (origin !== null && !allowed(site, origin)) {
      return { code: 'origin_not_allowed', message: `origin ${JSON.stringify(origin)} is not among the domains of site ${JSON.stringify(siteId)}` }
    }
    return null
  }
}
