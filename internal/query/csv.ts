import type { Query, QueryResult } from './query.ts'

/**
 * A /v1/query answer as CSV (RFC 4180, CRLF line ends): a header of the dimensions as asked
 * (`source`, `time:day`) and the metrics, then one line per result in the answer's order.
 * With a comparison, each metric is followed by `<metric>_comparison` and `<metric>_change`
 * (percent; empty where the comparison has nothing to compare with). A text cell that a
 * spreadsheet would run as a formula (it starts with = + - @, a tab or a carriage return)
 * gets a leading apostrophe; numbers are written as they are.
 */
export function toCsv(q: Pick<Query, 'order' | 'dimension' | 'time' | 'metrics'>, result: QueryResult): string {
  const compared = result.results.some((r) => r.comparison !== undefined) || result.meta.comparison !== undefined
  const header = [
    ...q.order.map((o) => (o === 'time' ? `time:${q.time}` : q.dimension!)),
    ...q.metrics.flatMap((m) => (compared ? [m, `${m}_comparison`, `${m}_change`] : [m])),
  ]
  const lines = [header.map(cell).join(',')]
  for (const r of result.results) {
    const metrics = r.metrics.flatMap((x, i) => (compared ? [x, r.comparison?.metrics[i] ?? null, r.comparison?.change[i] ?? null] : [x]))
    lines.push([...r.dimensions, ...metrics].map(cell).join(','))
  }
  return `${lines.join('\r\n')}\r\n`
}

/** One CSV cell: numbers as they are, null empty, text quoted when it must be and defused when a spreadsheet would run it. */
export function cell(x: string | number | null): string {
  if (x === null) return ''
  if (typeof x === 'number') return String(x)
  const text = /^[=+\-@\t\r]/.test(x) ? `'${x}` : x
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/** Reads CSV as toCsv writes it, back into rows of cells (for tests and tools). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let field = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"'
        i++
      } else if (ch === '"') quoted = false
      else field += ch
    } else if (ch === '"') quoted = true
    else if (ch === ',') {
      row.push(field)
      field = ''
    } else if (ch === '\n' || (ch === '\r' && text[i + 1] === '\n')) {
      if (ch === '\r') i++
      row.push(field)
      rows.push(row)
      row = []
      field = ''
    } else field += ch
  }
  if (field !== '' || row.length) rows.push([...row, field])
  return rows
}
