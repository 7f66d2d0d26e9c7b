import { describe, expect, test } from 'bun:test'
import { createEventParser, type ParseResult, textProblem } from './event.ts'

const NOW = Date.parse('2025-11-14T12:00:00Z')
const parse = createEventParser({ now: () => NOW, newId: () => '01a2015d-ffcc-704f-b537-162d405faf8e' })
const valid = { site_id: 'site-abc-123', event_type: 'pageview', timestamp: '2025-11-14T10:00:00Z' }

function problems(r: ParseResult) {
  if (r.ok) throw new Error(`expected a rejection, got ${JSON.stringify(r.event)}`)
  return r.problems
}
const rejects = (input: unknown, field: string, message: RegExp) => {
  expect(problems(parse(input))).toContainEqual({ field, message: expect.stringMatching(message) })
}

describe('an event', () => {
  test('with only the required fields is accepted, normalised and given a UUIDv7', () => {
    const r = parse(valid)
    expect(r).toEqual({
      ok: true,
      event: { ...valid, timestamp: '2025-11-14T10:00:00.000Z', path: null, user_id: null, event_id: '01a2015d-ffcc-704f-b537-162d405faf8e', received_at: NOW },
      context: { referrer: null, screen_width: null, click_id_param: null, ip: null, user_agent: null },
    })
  })

  test('keeps a given event_id, lower-cased', () => {
    const r = parse({ ...valid, event_id: 'A3BB189E-8BF9-3888-9912-ACE4E6543002' })
    expect(r.ok && r.event.event_id).toBe('a3bb189e-8bf9-3888-9912-ace4e6543002')
  })

  test('that is not an object is rejected as a whole', () => {
    for (const input of [null, 42, 'x', [valid]]) expect(problems(parse(input))).toEqual([{ field: 'event', message: 'event must be a JSON object' }])
  })

  test('names every missing required field at once', () => {
    expect(problems(parse({}))).toEqual([
      { field: 'site_id', message: 'site_id is required' },
      { field: 'event_type', message: 'event_type is required' },
    ])
  })

  test('without a timestamp, or with a null one, takes the time it was received', () => {
    for (const timestamp of [undefined, null]) {
      const r = parse({ ...valid, timestamp })
      expect(r.ok && r.event.timestamp).toBe(new Date(NOW).toISOString())
      expect(r.ok && r.event.received_at).toBe(NOW)
    }
  })

  test('ignores fields it does not know', () => {
    expect(parse({ ...valid, referrer: 'x' }).ok).toBe(true)
  })
})

describe('site_id', () => {
  test('accepts 1 to 128 characters of A-Z a-z 0-9 . _ : -', () => {
    expect(parse({ ...valid, site_id: 'a' }).ok).toBe(true)
    expect(parse({ ...valid, site_id: 'Az09._:-'.repeat(16) }).ok).toBe(true)
  })
  test.each([[''], ['x'.repeat(129)], ['has space'], ['slash/'], ['ümlaut'], ['semi;colon']])('rejects %p', (site_id) => {
    rejects({ ...valid, site_id }, 'site_id', /1-128 characters/)
  })
  test('rejects a number', () => rejects({ ...valid, site_id: 1 }, 'site_id', /must be a string/))
})

describe('event_type', () => {
  test('accepts 64 characters', () => expect(parse({ ...valid, event_type: 'e'.repeat(64) }).ok).toBe(true))
  test('rejects 65 characters', () => rejects({ ...valid, event_type: 'e'.repeat(65) }, 'event_type', /at most 64/))
  test('rejects an empty string', () => rejects({ ...valid, event_type: '' }, 'event_type', /must not be empty/))
  test('rejects a non-string', () => rejects({ ...valid, event_type: ['x'] }, 'event_type', /must be a string/))
})

describe('path and user_id', () => {
  test('accept their maximum lengths', () => {
    expect(parse({ ...valid, path: '/'.repeat(2048), user_id: 'u'.repeat(256) }).ok).toBe(true)
  })
  test('reject one character more', () => {
    rejects({ ...valid, path: '/'.repeat(2049) }, 'path', /at most 2048/)
    rejects({ ...valid, user_id: 'u'.repeat(257) }, 'user_id', /at most 256/)
  })
  test('treat null and empty strings as not given', () => {
    const r = parse({ ...valid, path: '', user_id: null })
    expect(r.ok && [r.event.path, r.event.user_id]).toEqual([null, null])
  })
  test('reject non-strings', () => {
    rejects({ ...valid, path: 5 }, 'path', /must be a string/)
    rejects({ ...valid, user_id: { id: 1 } }, 'user_id', /must be a string/)
  })
  test('reject NUL characters, which Postgres cannot store', () => {
    rejects({ ...valid, path: '/a\u0000b' }, 'path', /NUL/)
    rejects({ ...valid, user_id: '\u0000' }, 'user_id', /NUL/)
  })
  test('reject lone surrogates, which are not valid Unicode', () => {
    rejects({ ...valid, path: '/\ud800' }, 'path', /lone surrogate/)
    rejects({ ...valid, event_type: 'x\udfff' }, 'event_type', /lone surrogate/)
  })
  test('keep non-ASCII text as it is', () => {
    const r = parse({ ...valid, path: '/café/日本/🦆' })
    expect(r.ok && r.event.path).toBe('/café/日本/🦆')
  })
})

describe('event_id', () => {
  test.each([['not-a-uuid'], ['a3bb189e8bf938889912ace4e6543002'], [''], [123]])('rejects %p', (event_id) => {
    rejects({ ...valid, event_id }, 'event_id', /UUID|must be a string/)
  })
})

describe('timestamp', () => {
  test.each([
    ['2025-11-14T10:00:00Z', '2025-11-14T10:00:00.000Z'],
    ['2025-11-14T10:00:00.123456Z', '2025-11-14T10:00:00.123Z'],
    ['2025-11-14T12:00:00+02:00', '2025-11-14T10:00:00.000Z'],
    ['2025-11-14T05:30:00-0430', '2025-11-14T10:00:00.000Z'],
    ['2025-11-14T15:00+05', '2025-11-14T10:00:00.000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
  ])('accepts %p as %p', (timestamp, expected) => {
    const r = parse({ ...valid, timestamp })
    expect(r.ok && r.event.timestamp).toBe(expected)
  })

  test.each([
    ['2025-11-14T10:00:00', /with a timezone/],
    ['2025-11-14', /with a timezone/],
    ['14/11/2025 10:00', /ISO 8601/],
    ['1731578400', /ISO 8601/],
    ['2025-02-30T00:00:00Z', /not a real date/],
    ['2025-13-01T00:00:00Z', /not a real time/],
    ['2025-11-14T24:00:00Z', /not a real time/],
    ['2025-11-14T10:00:00+25:00', /offset/],
    ['1969-12-31T23:59:59Z', /before 1970/],
    // Years 0-99 are those years, not 1900-1999 (Date.UTC's reading), so they are before 1970.
    ['0070-06-15T00:00:00Z', /before 1970/],
    ['0001-01-01T00:00:00Z', /before 1970/],
    ['0099-12-31T23:59:59Z', /before 1970/],
    ['0097-02-29T00:00:00Z', /not a real date/],
  ])('rejects %p', (timestamp, message) => rejects({ ...valid, timestamp }, 'timestamp', message))

  test('reads a two-digit year written with four digits as that year, also on the fast path', () => {
    const r = createEventParser()({ ...valid, timestamp: '0070-06-15T00:00:00Z' })
    expect(r.ok).toBe(false)
    expect(parse({ ...valid, timestamp: '1969-12-31T23:00:00-02:00' })).toMatchObject({ ok: true, event: { timestamp: '1970-01-01T01:00:00.000Z' } })
  })

  test('rejects a number', () => rejects({ ...valid, timestamp: 1731578400 }, 'timestamp', /must be a string/))

  test("takes a timestamp in toISOString's form as it is, and leaves every other, impossible dates included, to the general parser", async () => {
    const fc = (await import('fast-check')).default
    const { canonicalMs, parseTimestamp } = await import('./timestamp.ts')
    const pad = (n: number, width: number) => String(n).padStart(width, '0')
    const field = (lo: number, hi: number) => fc.integer({ min: lo, max: hi })
    fc.assert(
      fc.property(
        fc.tuple(fc.oneof(field(1960, 2110), field(0, 9999)), field(0, 13), field(0, 32), field(0, 25), field(0, 60), field(0, 60), field(0, 999)),
        ([y, mo, d, h, mi, sec, milli]) => {
          const s = `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(h, 2)}:${pad(mi, 2)}:${pad(sec, 2)}.${pad(milli, 3)}Z`
          const general = parseTimestamp(s)
          const fast = canonicalMs(s)
          if (!general.ok) return fast === null
          return fast === general.ms && new Date(fast).toISOString() === s
        },
      ),
      { numRuns: 20_000 },
    )
    for (const s of [
      '2025-11-14T10:00:00Z',
      '2025-11-14t10:00:00.000Z',
      '2025-11-14T10:00:00.000+00:00',
      '2025-11-14 10:00:00.000Z',
      '2025-11-14T10:00:00.0000Z',
    ]) {
      expect(canonicalMs(s)).toBeNull()
    }
    expect(parse({ ...valid, timestamp: '2024-02-29T23:59:59.999Z' })).toMatchObject({ ok: true, event: { timestamp: '2024-02-29T23:59:59.999Z' } })
  })

  test('accepts up to 5 minutes in the future and rejects anything later', () => {
    expect(parse({ ...valid, timestamp: new Date(NOW + 5 * 60_000).toISOString() }).ok).toBe(true)
    rejects({ ...valid, timestamp: new Date(NOW + 5 * 60_000 + 1).toISOString() }, 'timestamp', /5 minutes in the future/)
    rejects({ ...valid, timestamp: '2999-01-01T00:00:00Z' }, 'timestamp', /in the future/)
  })
})

describe('the fast path for valid events', () => {
  test('accepts and normalises exactly what the valibot schema does', async () => {
    const fc = (await import('fast-check')).default
    const { createSchemaParser } = await import('./event.ts')
    const ids = () => '01a2015d-ffcc-704f-b537-162d405faf8e'
    const parsers = [false, true].map((allowForwarded) => ({
      fast: createEventParser({ now: () => NOW, newId: ids, allowForwarded }),
      slow: createSchemaParser({ now: () => NOW, newId: ids, allowForwarded }),
    }))
    const str = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.constantFrom('', '\u0000', '\ud800', 'x'.repeat(65), 'y'.repeat(129), 'p'.repeat(2049), 'u'.repeat(257)),
    )
    const field = fc.oneof(str, fc.constant(null), fc.constant(undefined), fc.integer(), fc.boolean(), fc.constant({}), fc.constant([]))
    const event = fc.record(
      {
        site_id: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,130}$/), field),
        event_type: fc.oneof(fc.string({ minLength: 1, maxLength: 70 }), field),
        timestamp: fc.oneof(
          fc.date({ min: new Date('1960-01-01T00:00:00Z'), max: new Date(NOW + 600_000), noInvalidDate: true }).map((d) => d.toISOString()),
          fc.constantFrom('2025-11-14T10:00:00+02:00', '2025-11-14T10:00:00', '2025-02-30T00:00:00Z', '2025-11-14T15:00+05'),
          field,
        ),
        path: fc.oneof(fc.string({ maxLength: 2050, unit: 'binary' }), field),
        user_id: fc.oneof(fc.string({ maxLength: 260, unit: 'binary' }), field),
        event_id: fc.oneof(
          fc.uuid(),
          fc.uuid().map((u) => u.toUpperCase()),
          field,
        ),
        referrer: fc.oneof(fc.webUrl(), fc.string({ maxLength: 2050, unit: 'binary' }), field),
        utm_source: fc.oneof(fc.string({ maxLength: 258, unit: 'binary' }), field),
        utm_term: fc.oneof(fc.string({ maxLength: 258 }), field),
        screen_width: fc.oneof(fc.integer({ min: -2, max: 100_002 }), fc.double(), field),
        click_id_param: fc.oneof(fc.constantFrom('gclid', 'gbraid', 'wbraid', 'msclkid', 'GCLID', 'fbclid', 'Cj0KCQiA'), field),
        props: fc.oneof(
          fc.dictionary(
            fc.oneof(fc.string({ maxLength: 66, unit: 'binary' }), fc.constantFrom('', '__proto__', 'constructor')),
            fc.oneof(fc.string({ maxLength: 258, unit: 'binary' }), fc.double(), fc.boolean(), fc.constant(null), fc.constant({}), fc.constant([])),
            { maxKeys: 32 },
          ),
          field,
        ),
        ip: fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('1.2.3', '::ffff:1.2.3.4', '999.1.1.1'), field),
        user_agent: fc.oneof(fc.string({ maxLength: 1030, unit: 'binary' }), field),
      },
      { requiredKeys: [] },
    )
    const valid = fc.record(
      {
        site_id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/),
        event_type: fc.string({ minLength: 1, maxLength: 64 }),
        timestamp: fc.option(
          fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date(NOW + 300_000), noInvalidDate: true }).map((d) => d.toISOString()),
          {
            nil: undefined,
          },
        ),
        path: fc.option(fc.string({ maxLength: 2048 })),
        user_id: fc.option(fc.string({ maxLength: 256 })),
        event_id: fc.option(fc.uuid(), { nil: undefined }),
        referrer: fc.option(fc.webUrl()),
        utm_source: fc.option(fc.string({ maxLength: 256 })),
        utm_campaign: fc.option(fc.string({ maxLength: 256 })),
        screen_width: fc.option(fc.integer({ min: 0, max: 100_000 })),
        click_id_param: fc.option(fc.constantFrom('gclid', 'gbraid', 'wbraid', 'msclkid', '')),
        props: fc.option(
          fc.dictionary(
            fc.string({ minLength: 1, maxLength: 64 }),
            fc.oneof(fc.string({ maxLength: 256 }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean()),
            {
              maxKeys: 30,
            },
          ),
        ),
        ip: fc.option(fc.oneof(fc.ipV4(), fc.ipV6())),
        user_agent: fc.option(fc.string({ maxLength: 1024 })),
      },
      { requiredKeys: ['site_id', 'event_type', 'timestamp'] },
    )
    let accepted = 0
    fc.assert(
      fc.property(fc.oneof(valid, event, fc.anything()), fc.nat(1), (input, i) => {
        const { fast, slow } = parsers[i]!
        const a = fast(input)
        expect(a).toEqual(slow(input))
        if (a.ok) accepted++
      }),
      { numRuns: 4000, seed: 11 },
    )
    // Both outcomes must be well represented for the comparison to mean anything.
    expect(accepted).toBeGreaterThan(100)
    expect(accepted).toBeLessThan(3900)
  })
})

describe('the text rule', () => {
  test('names a NUL, then a lone surrogate, and passes well-formed text', () => {
    expect(textProblem('event_type', 'a\0b')).toBe('event_type must not contain NUL characters')
    expect(textProblem('from', '\uD800x')).toBe('from must be valid Unicode (it has a lone surrogate)')
    expect(textProblem('path', '/ü/😀')).toBeNull()
  })
})
