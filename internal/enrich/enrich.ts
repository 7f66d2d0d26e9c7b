// Package enrich derives what an analytics event does not carry itself: bot or browser, OS and
// device from the user agent, country from the IP address, and source and channel from the
// referrer and UTM tags, all from npm-maintained data (isbot, ua-parser-js 1.x, DB-IP Lite, @tryghost/referrer-parser).
import { createCountryLookup } from './country.ts'
import { type Channel, createSourceReader, type Source, type SourceInput } from './source.ts'
import { type Agent, type BotReason, createAgentReader, type Device } from './user-agent.ts'

export type { Agent, BotReason, Channel, Source, SourceInput }

export type EnricherOptions = { userAgentCacheSize?: number /* default 10_000 */ }

export type Enricher = {
  /**
   * Bot or not, browser, OS and device class, parsed once per distinct user agent (a bounded
   * cache that drops its oldest entry when full; only the first 512 characters are read).
   * null or '' gives a non-bot with every field null. Results are shared and frozen.
   *
   * Bots: whatever isbot flags, reason 'headless' when one of isbot's matching patterns names
   * an automated browser (headless, phantom, puppeteer, playwright, selenium, webdriver,
   * cypress, lighthouse), else 'crawler'. HTTP client libraries that servers send their own
   * events with are not bots: a user agent starting with one of their product tokens (curl,
   * Wget, node, undici, axios, python-requests, Go-http-client, okhttp, …; see CLIENT_LIBRARY
   * in user-agent.ts) is exempt. Device: ua-parser-js's type mobile → 'Mobile', tablet →
   * 'Tablet', anything else 'Desktop' when a browser was recognised, null when none was (curl).
   */
  agent(userAgent: string | null): Agent
  /** ISO 3166-1 alpha-2 country of an IPv4 or IPv6 address (also ::ffff:1.2.3.4), or null for private, unknown or malformed input. */
  country(ip: string | null): string | null
  /**
   * Source and channel of one event.
   *
   * Source: a non-empty utm_source, under the referrer list's name for it when it names a known
   * site ('google' → 'Google', 'news.ycombinator.com' → 'Hacker News'), else as given; else the
   * referrer's known name ('Google', 'Hacker News', 'Twitter', …), else its host without
   * 'www.'; else 'Direct / None'. `referrer` is that host, lower-case without 'www.', or null
   * when absent or unparseable: never the full URL.
   *
   * Channel, after GA4's default channel groups, first match wins: a paid utm_medium (GA4's
   * pattern: contains 'cp', or ppc, retargeting, paid…), a source the list files as paid (ad
   * networks), or a Google/Microsoft Ads click ID (gclid, gbraid, wbraid, msclkid: named by
   * `click_id_param`, as the tracker sends it, or found in `path`) with no utm_medium → 'Paid Social' when the source is social or the medium says social,
   * else 'Paid Search' (which also takes display and native ads: the set has no 'Paid Other').
   * utm_medium or utm_source mentioning email/e-mail/newsletter, or an email source → 'Email'.
   * A search source, or utm_medium 'organic' → 'Organic Search'. A social source, or utm_medium
   * social/sm → 'Organic Social'. Any other referrer or utm_source → 'Referral'. Else 'Direct'
   * (a lone unrecognised utm_medium, or utm_campaign, which no rule reads).
   */
  source(input: SourceInput): Source
}

/**
 * Maps the country database (about 8 MB, from node_modules, read-only) and reads the
 * referrer list once; every call after that is pure computation besides the user-agent cache,
 * and none throws, whatever the input.
 */
export function createEnricher({ userAgentCacheSize = 10_000 }: EnricherOptions = {}): Enricher {
  return { agent: createAgentReader(userAgentCacheSize), country: createCountryLookup(), source: createSourceReader() }
}

/** Device class from screen width in CSS pixels (the tracker sends it): <576 Mobile, <992 Tablet, else Desktop. */
export function deviceFromScreen(width: number): Device {
  if (width < 576) return 'Mobile'
  if (width < 992) return 'Tablet'
  return 'Desktop'
}
