import { describe, expect, test } from 'bun:test'
import { UAParser } from 'ua-parser-js'
import { type Agent, type Channel, createEnricher, deviceFromScreen, type SourceInput } from './enrich.ts'
import { defuse } from './user-agent.ts'

const enricher = createEnricher()
const UA = {
  chromeWindows: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
  firefoxWindows: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0',
  safariMac: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15',
  edgeWindows: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0',
  iphone: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1',
  androidChrome: 'Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
  ipad: 'Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1',
  googlebot: 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
  bingbot: 'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)',
  headlessChrome: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 Safari/537.36',
  phantom: 'Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1',
}
const none: SourceInput = { referrer: null, utm_source: null, utm_medium: null, utm_campaign: null }
const from = (input: Partial<SourceInput>) => enricher.source({ ...none, ...input })

describe('agent', () => {
  const browsers: [string, string, string, string, Agent['device']][] = [
    ['desktop Chrome', UA.chromeWindows, 'Chrome', 'Windows', 'Desktop'],
    ['desktop Firefox', UA.firefoxWindows, 'Firefox', 'Windows', 'Desktop'],
    ['desktop Safari', UA.safariMac, 'Safari', 'Mac OS', 'Desktop'],
    ['desktop Edge', UA.edgeWindows, 'Edge', 'Windows', 'Desktop'],
    ['iPhone Safari', UA.iphone, 'Mobile Safari', 'iOS', 'Mobile'],
    ['Android Chrome', UA.androidChrome, 'Chrome', 'Android', 'Mobile'],
    ['iPad Safari', UA.ipad, 'Mobile Safari', 'iOS', 'Tablet'],
  ]
  test.each(browsers)('reads %s as a browser, its OS and its device class', (_, ua, browser, os, device) => {
    expect(enricher.agent(ua)).toEqual({ bot: null, browser, os, device })
  })

  test('calls Googlebot and Bingbot crawlers', () => {
    expect(enricher.agent(UA.googlebot).bot).toBe('crawler')
    expect(enricher.agent(UA.bingbot).bot).toBe('crawler')
  })

  test('calls HeadlessChrome, PhantomJS and Selenium headless', () => {
    expect(enricher.agent(UA.headlessChrome)).toMatchObject({ bot: 'headless', os: 'Windows', device: 'Desktop' })
    expect(enricher.agent(UA.phantom).bot).toBe('headless')
    expect(enricher.agent('Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0 Selenium').bot).toBe('headless')
  })

  test.each([
    'curl/8.5.0',
    'Wget/1.21.4',
    'python-requests/2.31.0',
    'Python-urllib/3.11',
    'python-httpx/0.27.0',
    'Python/3.11 aiohttp/3.9.1',
    'Go-http-client/1.1',
    'node',
    'undici',
    'node-fetch/1.0 (+https://github.com/bitinn/node-fetch)',
    'axios/1.6.2',
    'okhttp/4.12.0',
    'Java-http-client/17.0.2',
    'Apache-HttpClient/4.5.14 (Java/17.0.2)',
    'Ruby',
    'GuzzleHttp/7',
    'libwww-perl/6.72',
    'Bun/1.1.0',
    'Deno/1.40.0',
  ])('takes the HTTP client library %s for a server sending its own events, not a bot, with nothing recognised', (ua) => {
    expect(enricher.agent(ua)).toEqual({ bot: null, browser: null, os: null, device: null })
  })

  test('keeps calling a crawler a bot when its name only starts like a client library', () => {
    expect(enricher.agent('nodejs-crawler/1.0 (+https://example.com/bot)').bot).toBe('crawler')
    expect(enricher.agent('curlbot/1.0').bot).toBe('crawler')
  })

  test('gives a missing or empty user agent no bot flag and no fields', () => {
    const nothing = { bot: null, browser: null, os: null, device: null }
    expect(enricher.agent(null)).toEqual(nothing)
    expect(enricher.agent('')).toEqual(nothing)
  })

  test('parses a repeated user agent once and hands back the same result', () => {
    expect(enricher.agent(UA.chromeWindows)).toBe(enricher.agent(UA.chromeWindows))
  })

  test('holds no more user agents than its cache size, dropping the oldest', () => {
    const small = createEnricher({ userAgentCacheSize: 2 })
    const chrome = small.agent(UA.chromeWindows)
    small.agent(UA.firefoxWindows)
    expect(small.agent(UA.chromeWindows)).toBe(chrome)
    small.agent(UA.safariMac)
    const again = small.agent(UA.chromeWindows)
    expect(again).not.toBe(chrome)
    expect(again).toEqual(chrome)
  })

  test('reads only the first 512 characters of a long user agent, so its tail changes nothing', () => {
    const long = `${UA.chromeWindows} ${'x'.repeat(600)}`
    expect(enricher.agent(long)).toBe(enricher.agent(`${long} Googlebot/2.1`))
    expect(enricher.agent(long).bot).toBeNull()
  })

  test("defuses the agents two of ua-parser-js's expressions backtrack on, and parses real Archos and Naver agents as before", () => {
    // archos + 505 digits took ua-parser-js 136 ms, naver( + "1.1" repeated 24 ms (bun run bench:agents).
    const archos = defuse(`archos ${'1'.repeat(505)}`)
    expect(archos).toBe(`archos ${'1'.repeat(23)}`)
    expect(defuse(`x naver(${'1.1'.repeat(168)}`)).not.toContain('naver(')
    expect(defuse(`x naver()${'1.1'.repeat(168)}`)).toBe('x naver()')
    const real = [
      'Mozilla/5.0 (Linux; Android 4.2.2; Archos 101 Internet Tablet Build/JDQ39) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/30.0.0.0 Safari/537.36',
      'Mozilla/5.0 (Linux; Android 6.0; Archos 55 Diamond Selfie Build/MRA58K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/55.0.2883.91 Mobile Safari/537.36',
      'Mozilla/5.0 (Linux; Android 4.1.1; ARCHOS GAMEPAD Build/JRO03H) AppleWebKit/535.19 (KHTML, like Gecko) Chrome/18.0.1025.166 Safari/535.19',
      'Mozilla/5.0 (iPhone; CPU iPhone OS 15_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 NAVER(inapp; search; 1000; 11.10.5; 12PRO)',
    ]
    for (const ua of real) {
      const plain = new UAParser(ua).getResult()
      const device = plain.device.type === 'mobile' ? 'Mobile' : plain.device.type === 'tablet' ? 'Tablet' : 'Desktop'
      expect(enricher.agent(ua)).toEqual({ bot: null, browser: plain.browser.name!, os: plain.os.name!, device })
    }
    expect(enricher.agent(real[3]!).browser).toBe('NAVER')
    expect(enricher.agent(real[0]!).device).toBe('Tablet')
  })

  test('never throws on hostile input', () => {
    for (const ua of ['\0', 'Mozilla/5.0\0(Windows NT 10.0)', 'a'.repeat(1_000_000), '('.repeat(10_000), '\u{1F600}'.repeat(1000)]) {
      expect(() => enricher.agent(ua)).not.toThrow()
    }
  })
})

describe('country', () => {
  test.each([
    ['8.8.8.8', 'US'],
    ['85.214.132.117', 'DE'],
    ['133.11.0.1', 'JP'],
    ['2a01:4f8::1', 'DE'],
    ['2001:218::1', 'JP'],
    ['::ffff:8.8.8.8', 'US'],
  ])('maps %s to %s', (ip, code) => {
    expect(enricher.country(ip)).toBe(code)
  })

  test.each(['10.0.0.1', '127.0.0.1', '192.168.1.1', '::1', 'fe80::1', '2001:db8::1'])('has no country for the private or reserved address %s', (ip) => {
    expect(enricher.country(ip)).toBeNull()
  })

  test('answers an address repeated in a row, as in a batch, the same as the first time, and the next address by its own', () => {
    const sequence = ['85.214.132.117', '85.214.132.117', '8.8.8.8', '8.8.8.8', null, '133.11.0.1', '85.214.132.117', 'garbage', 'garbage', '2a01:4f8::1']
    expect(sequence.map((ip) => enricher.country(ip))).toEqual(['DE', 'DE', 'US', 'US', null, 'JP', 'DE', null, null, 'DE'])
  })

  test('has no country for malformed input and does not throw', () => {
    for (const ip of [null, '', 'garbage', '1.2.3', '1.2.3.4.5', '999.1.1.1', '8.8.8.8\0', ' 8.8.8.8', '[::1]', '::ffff:999.1.1.1', 'x'.repeat(100_000)]) {
      expect(enricher.country(ip)).toBeNull()
    }
  })
})

describe('source', () => {
  test('names a Google search referrer and stores only its host, without www', () => {
    expect(from({ referrer: 'https://www.google.com/search?q=sluice+analytics' })).toEqual({
      source: 'Google',
      referrer: 'google.com',
      channel: 'Organic Search',
    })
  })

  const referrers: [string, string, string, Channel][] = [
    ['https://www.google.co.uk/', 'Google', 'google.co.uk', 'Organic Search'],
    ['https://www.bing.com/search?q=x', 'Bing', 'bing.com', 'Organic Search'],
    ['https://duckduckgo.com/', 'DuckDuckGo', 'duckduckgo.com', 'Organic Search'],
    ['https://news.ycombinator.com/item?id=1', 'Hacker News', 'news.ycombinator.com', 'Organic Social'],
    ['https://t.co/AbC123', 'Twitter', 't.co', 'Organic Social'],
    ['https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.com', 'Facebook', 'l.facebook.com', 'Organic Social'],
    ['https://www.reddit.com/r/programming/', 'Reddit', 'reddit.com', 'Organic Social'],
    ['https://www.linkedin.com/feed/', 'LinkedIn', 'linkedin.com', 'Organic Social'],
    ['https://m.youtube.com/watch?v=1', 'Youtube', 'm.youtube.com', 'Organic Social'],
    ['https://mail.google.com/mail/u/0/', 'Gmail', 'mail.google.com', 'Email'],
    ['https://some-blog.example.org/2025/a-post?ref=1', 'some-blog.example.org', 'some-blog.example.org', 'Referral'],
  ]
  test.each(referrers)('classifies the referrer %s as %s, host %s, %s', (referrer, source, host, channel) => {
    expect(from({ referrer })).toEqual({ source, referrer: host, channel })
  })

  test('treats an unparseable referrer as absent', () => {
    expect(from({ referrer: 'not a url' })).toEqual({ source: 'Direct / None', referrer: null, channel: 'Direct' })
    expect(from({ referrer: 'javascript:alert(1)' })).toEqual({ source: 'Direct / None', referrer: null, channel: 'Direct' })
  })

  test('calls an event with nothing to go on Direct', () => {
    expect(from({})).toEqual({ source: 'Direct / None', referrer: null, channel: 'Direct' })
  })

  test('prefers utm_source to the referrer, under the known name when there is one, and keeps the referrer host', () => {
    expect(from({ utm_source: ' google ', utm_medium: 'cpc', referrer: 'https://www.example.com/x' })).toEqual({
      source: 'Google',
      referrer: 'example.com',
      channel: 'Paid Search',
    })
    expect(from({ utm_source: 'facebook' })).toEqual({ source: 'Facebook', referrer: null, channel: 'Organic Social' })
    expect(from({ utm_source: 'news.ycombinator.com' }).source).toBe('Hacker News')
  })

  test('keeps an unknown utm_source as given and calls it Referral', () => {
    expect(from({ utm_source: 'Partner-Site', referrer: 'https://www.google.com/' })).toEqual({
      source: 'Partner-Site',
      referrer: 'google.com',
      channel: 'Referral',
    })
  })

  test('ignores a blank utm_source', () => {
    expect(from({ utm_source: '   ', referrer: 'https://t.co/x' }).source).toBe('Twitter')
  })

  const channels: [Partial<SourceInput>, Channel][] = [
    [{ utm_source: 'google', utm_medium: 'cpc' }, 'Paid Search'],
    [{ utm_source: 'bing', utm_medium: 'ppc' }, 'Paid Search'],
    [{ utm_source: 'facebook', utm_medium: 'cpc' }, 'Paid Social'],
    [{ utm_source: 'linkedin', utm_medium: 'paid' }, 'Paid Social'],
    [{ utm_source: 'fb', utm_medium: 'paid_social' }, 'Paid Social'],
    [{ utm_source: 'partner', utm_medium: 'cpm' }, 'Paid Search'],
    [{ referrer: 'https://www.googleadservices.com/pagead/aclk' }, 'Paid Search'],
    [{ referrer: 'https://www.google.com/', path: '/pricing?gclid=abc123' }, 'Paid Search'],
    [{ utm_source: 'weekly', utm_medium: 'email' }, 'Email'],
    [{ utm_source: 'weekly', utm_medium: 'E-Mail' }, 'Email'],
    [{ utm_source: 'acme', utm_medium: 'newsletter' }, 'Email'],
    [{ utm_source: 'newsletter' }, 'Email'],
    [{ referrer: 'https://outlook.live.com/mail/0/' }, 'Email'],
    [{ utm_source: 'duckduckgo' }, 'Organic Search'],
    [{ utm_source: 'partner', utm_medium: 'organic' }, 'Organic Search'],
    [{ utm_source: 'partner', utm_medium: 'social' }, 'Organic Social'],
    [{ utm_source: 'partner', utm_medium: 'banner' }, 'Referral'],
    [{ utm_campaign: 'spring' }, 'Direct'],
  ]
  test.each(channels.map(([input, channel]) => [JSON.stringify(input), channel, input] as const))('gives %s the channel %s', (_, channel, input) => {
    expect(from(input).channel).toBe(channel)
  })

  test('names the ad network of a click ID when nothing else names a source', () => {
    expect(from({ path: '/?gclid=abc' })).toEqual({ source: 'Google', referrer: null, channel: 'Paid Search' })
    expect(from({ path: '/landing?x=1&msclkid=abc' })).toEqual({ source: 'Bing', referrer: null, channel: 'Paid Search' })
  })

  test('counts a click ID named by click_id_param (the tracker sends no query string) as paid, and a utm_medium still decides over it', () => {
    // An auto-tagged Google Ads click arrives with Google as its referrer: without the click ID it would be Organic Search.
    expect(from({ referrer: 'https://www.google.com/', path: '/pricing', click_id_param: 'gclid' })).toEqual({
      source: 'Google',
      referrer: 'google.com',
      channel: 'Paid Search',
    })
    expect(from({ referrer: 'https://www.google.com/', path: '/pricing' }).channel).toBe('Organic Search')
    expect(from({ path: '/', click_id_param: 'msclkid' })).toEqual({ source: 'Bing', referrer: null, channel: 'Paid Search' })
    expect(from({ utm_source: 'newsletter', utm_medium: 'email', click_id_param: 'gclid' }).channel).toBe('Email')
  })

  test('never throws on hostile input', () => {
    const inputs = [
      { referrer: `https://${'a.'.repeat(5000)}com/` },
      { referrer: `https://example.com/${'x'.repeat(100_000)}` },
      { referrer: 'https://exa\0mple.com/' },
      { referrer: 'http://[::1]:8080/' },
      { utm_source: '\0'.repeat(1000), utm_medium: '\0' },
      { utm_source: `${'a.'.repeat(100_000)}com` },
    ]
    for (const input of inputs) expect(() => from(input)).not.toThrow()
  })
})

describe('deviceFromScreen', () => {
  test('calls widths under 576 Mobile, under 992 Tablet, and the rest Desktop', () => {
    expect([320, 575, 576, 991, 992, 2560].map(deviceFromScreen)).toEqual(['Mobile', 'Mobile', 'Tablet', 'Tablet', 'Desktop', 'Desktop'])
  })
})
