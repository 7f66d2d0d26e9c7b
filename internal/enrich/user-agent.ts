import { isbot, isbotPatterns, list as botPatterns } from 'isbot'
import { UAParser } from 'ua-parser-js'

export type BotReason = 'crawler' | 'headless'
export type Device = 'Desktop' | 'Mobile' | 'Tablet'
export type Agent = { bot: BotReason | null; browser: string | null; os: string | null; device: Device | null }

/**
 * HTTP client libraries, by the product token they put first in their user agent: servers use
 * them to send their own events, so they are not bots even though isbot flags most of them.
 * The token must be followed by '/', a space, ';', '(' or the end, so 'nodejs-crawler/1.0' or
 * 'curlbot' stay bots. 'python' covers aiohttp ('Python/3.11 aiohttp/3.9'), 'java' the JDK's
 * URLConnection ('Java/17.0.2'), 'php' PHP's streams.
 */
export const CLIENT_LIBRARY =
  /^(?:curl|wget|node|node-fetch|undici|axios|python-requests|python-urllib|python-httpx|python|aiohttp|go-http-client|okhttp|java-http-client|java|apache-httpclient|ruby|guzzlehttp|php|libwww-perl|bun|deno)(?:[/\s;(]|$)/i

/** Which of isbot's own patterns name a headless or automated browser rather than a crawler. */
const AUTOMATION = /headless|phantom|puppeteer|playwright|selenium|webdriver|cypress|lighthouse/i

/** User agents are cut to this many characters before anything reads them: real ones are shorter, and the cache key stays bounded. */
export const MAX_USER_AGENT_LENGTH = 512

const NOTHING: Agent = Object.freeze({ bot: null, browser: null, os: null, device: null })

/**
 * Two of ua-parser-js 1.0.41's 307 expressions backtrack far more than linearly on a crafted
 * agent (a fuzz of each against keyword + separator + a repeated filler, 500 characters;
 * every other stayed near or under a millisecond, docs/benchmarks.md):
 * - Archos devices, `archos ?(…[\w ]*[t1789]…\d+[\w ]*)( b|\))`: `archos ` and 500 digits
 *   took 190-290 ms. The run of word characters and spaces after `archos` is cut to
 *   ARCHOS_RUN characters (real ones are shorter, or end in " Build" the cut keeps a " B" of).
 * - Naver's app, `(naver)\(.*?(\d+\.[\w\.]+).*\)`: `naver(` and `1.1` repeated took 20-40 ms,
 *   when no `)` follows the digits: every start of a version is then tried against every
 *   way to end it. What follows the last `)` can never be part of a match, so it is cut (no
 *   `)` after `naver(` at all: `naver(` loses its parenthesis), which changes no answer of
 *   this expression; real Naver agents end with their `NAVER(…)` token.
 * Everything else is passed on unchanged, so real agents parse as before.
 */
export function defuse(ua: string): string {
  let out = ua
  if (/archos/i.test(out)) out = out.replace(ARCHOS_LONG_RUN, '$1')
  const naver = out.search(/naver\(/i)
  if (naver >= 0) {
    const close = out.lastIndexOf(')')
    out = close < naver ? out.replace(/(naver)\(/gi, '$1 ') : out.slice(0, close + 1)
  }
  return out
}
const ARCHOS_RUN = 24
const ARCHOS_LONG_RUN = new RegExp(`(archos[\\w ]{${ARCHOS_RUN}})[\\w ]+`, 'gi')

/**
 * A user-agent reader: bot or not (isbot) and browser, OS and device (ua-parser-js 1.x, MIT),
 * each distinct user agent parsed once. The cache is a Map in insertion order; when it holds
 * `cacheSize` entries the oldest goes, so a flood of unique agents costs parsing, not memory.
 * Results are frozen because callers share them.
 */
export function createAgentReader(cacheSize: number): (userAgent: string | null) => Agent {
  const headless = new Set(botPatterns.filter((pattern) => AUTOMATION.test(pattern)))
  const cache = new Map<string, Agent>()
  return function agent(userAgent) {
    if (typeof userAgent !== 'string' || userAgent === '') return NOTHING
    const ua = userAgent.length > MAX_USER_AGENT_LENGTH ? userAgent.slice(0, MAX_USER_AGENT_LENGTH) : userAgent
    const hit = cache.get(ua)
    if (hit) return hit
    const result = read(ua, headless)
    if (cacheSize > 0) {
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value!)
      cache.set(ua, result)
    }
    return result
  }
}

function read(ua: string, headless: Set<string>): Agent {
  const bot = CLIENT_LIBRARY.test(ua) || !isbot(ua) ? null : isbotPatterns(ua).some((p) => headless.has(p)) ? 'headless' : 'crawler'
  const parser = new UAParser(defuse(ua))
  const browser = parser.getBrowser().name || null
  const os = parser.getOS().name || null
  const type = parser.getDevice().type
  const device = type === 'mobile' ? 'Mobile' : type === 'tablet' ? 'Tablet' : browser ? 'Desktop' : null
  if (!bot && !browser && !os && !device) return NOTHING
  return Object.freeze({ bot, browser, os, device })
}
