import { describe, expect, test } from 'bun:test'
import { change } from './compare.ts'
import { cell, parseCsv } from './csv.ts'
import { comparisonDates, datesToRange, presetDates } from './dates.ts'

describe('date ranges', () => {
  test('resolve presets against today on the site calendar', () => {
    expect(presetDates('day', '2025-03-10')).toEqual(['2025-03-10', '2025-03-10'])
    expect(presetDates('7d', '2025-03-02')).toEqual(['2025-02-24', '2025-03-02'])
    expect(presetDates('month', '2024-02-10')).toEqual(['2024-02-01', '2024-02-29'])
    expect(presetDates('12mo', '2025-03-10')).toEqual(['2024-04-01', '2025-03-31'])
    expect(presetDates('year', '2025-03-10')).toEqual(['2025-01-01', '2025-12-31'])
    expect(presetDates('all', '2025-03-10')).toBeNull()
  })

  test('compare with as many days before, whole months with the months before, and a year back with the 29th of February as the 28th', () => {
    expect(comparisonDates(['2025-03-04', '2025-03-10'], 'previous_period')).toEqual(['2025-02-25', '2025-03-03'])
    expect(comparisonDates(['2025-03-01', '2025-03-31'], 'previous_period')).toEqual(['2025-02-01', '2025-02-28'])
    expect(comparisonDates(['2024-04-01', '2025-03-31'], 'previous_period')).toEqual(['2023-04-01', '2024-03-31'])
    expect(comparisonDates(['2024-02-29', '2024-03-06'], 'year_over_year')).toEqual(['2023-02-28', '2023-03-06'])
  })

  test('compare a period still in progress with as much of the other as has passed of it', () => {
    // This month on the 5th: the 1st to the 5th of the month before, not all of it.
    expect(comparisonDates(['2025-03-01', '2025-03-31'], 'previous_period', '2025-03-05')).toEqual(['2025-02-01', '2025-02-05'])
    expect(comparisonDates(['2025-03-01', '2025-03-31'], 'previous_period', '2025-03-30')).toEqual(['2025-02-01', '2025-02-28'])
    expect(comparisonDates(['2025-03-01', '2025-03-31'], 'previous_period', '2025-03-31')).toEqual(['2025-02-01', '2025-02-28'])
    expect(comparisonDates(['2025-01-01', '2025-12-31'], 'previous_period', '2025-03-05')).toEqual(['2024-01-01', '2024-03-05'])
    expect(comparisonDates(['2025-01-01', '2025-12-31'], 'year_over_year', '2025-03-05')).toEqual(['2024-01-01', '2024-03-05'])
    expect(comparisonDates(['2025-03-01', '2025-03-10'], 'previous_period', '2025-03-05')).toEqual(['2025-02-19', '2025-02-23'])
    // Ranges that end today, or are over, keep the whole period; so does today itself.
    expect(comparisonDates(['2025-03-04', '2025-03-10'], 'previous_period', '2025-03-10')).toEqual(['2025-02-25', '2025-03-03'])
    expect(comparisonDates(['2025-02-01', '2025-02-28'], 'previous_period', '2025-03-05')).toEqual(['2025-01-01', '2025-01-31'])
    expect(comparisonDates(['2025-03-05', '2025-03-05'], 'previous_period', '2025-03-05')).toEqual(['2025-03-04', '2025-03-04'])
    expect(comparisonDates(['2024-02-01', '2024-02-29'], 'previous_period')).toEqual(['2024-01-01', '2024-01-31'])
  })

  test('cover local days from the start of the UTC hour holding their midnight', () => {
    expect(datesToRange(['2025-03-09', '2025-03-09'], 'America/New_York').map((d) => d.toISOString())).toEqual([
      '2025-03-09T05:00:00.000Z',
      '2025-03-10T04:00:00.000Z',
    ])
    expect(datesToRange(['2025-03-01', '2025-03-01'], 'Asia/Kolkata').map((d) => d.toISOString())).toEqual([
      '2025-02-28T18:00:00.000Z',
      '2025-03-01T18:00:00.000Z',
    ])
  })
})

describe('a change against the period before', () => {
  test('is in percent for counts, and in percentage points for rates', () => {
    expect(change(44, 40, 'visitors')).toBe(10)
    expect(change(44, 40, 'bounce_rate')).toBe(4)
    expect(change(33.33, 40, 'conversion_rate')).toBe(-6.7)
    expect(change(5, 0, 'bounce_rate')).toBe(5)
    expect(change(5, 0, 'events')).toBeNull()
    expect(change(0, 0, 'events')).toBe(0)
  })
})

describe('CSV cells', () => {
  test('quote what must be quoted, defuse formulas, and read back as written', () => {
    expect(cell(12.5)).toBe('12.5')
    expect(cell(null)).toBe('')
    expect(cell('a,b')).toBe('"a,b"')
    expect(cell('say "hi"')).toBe('"say ""hi"""')
    expect(cell('=HYPERLINK("x")')).toBe('"\'=HYPERLINK(""x"")"')
    expect(cell('-5')).toBe("'-5")
    expect(cell('line\nbreak')).toBe('"line\nbreak"')
    expect(parseCsv('a,"b,c","d""e"\r\n1,,"x\ny"\r\n')).toEqual([
      ['a', 'b,c', 'd"e'],
      ['1', '', 'x\ny'],
    ])
  })
})
